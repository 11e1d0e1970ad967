import { describe, expect, it } from 'vitest';
import { createLogger, prettyLine } from './index';

function capture(format?: 'json' | 'pretty'): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level: 'info', service: 'gateway', format, write: (l) => lines.push(l) }) };
}

describe('the one logger', () => {
  it('writes JSON lines: level, ISO time, msg, service and the fields; children add theirs; below the level is dropped', () => {
    const { lines, logger } = capture();
    logger.debug({ x: 1 }, 'not written');
    logger.info({ worker: 'd-0' }, 'worker joined');
    logger.child({ requestId: 'r-1' }).warn({ error: 'boom' }, 'retrying');
    logger.error('just a message');
    const recs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
    expect(recs).toHaveLength(3);
    expect(recs[0]).toMatchObject({ level: 'info', service: 'gateway', worker: 'd-0', msg: 'worker joined' });
    expect(new Date(recs[0]!['time'] as string).toISOString()).toBe(recs[0]!['time']);
    expect(recs[1]).toMatchObject({ level: 'warn', requestId: 'r-1', error: 'boom', msg: 'retrying' });
    expect(recs[2]).toMatchObject({ level: 'error', msg: 'just a message' });
  });

  it('serializes errors under err', () => {
    const { lines, logger } = capture();
    logger.error({ err: new Error('device lost') }, 'request failed');
    expect(JSON.parse(lines[0]!)).toMatchObject({ err: { message: 'device lost', type: 'Error' } });
  });

  it('pretty: one readable line per record', () => {
    const { lines, logger } = capture('pretty');
    logger.warn({ worker: 'd-1', error: 'connection refused' }, 'worker unreachable');
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}\[gateway\] worker unreachable worker=d-1 error="connection refused"\n$/);
    expect(prettyLine('not json')).toBe('not json');
  });
});
