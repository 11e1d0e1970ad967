import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseFlags, UsageError, type Flags } from '../args';
import { edgeForChild, edgeOptionsOf } from './edge';
import { serve } from './serve';

const dirs: string[] = [];
afterEach(() => {
  delete process.env['PDSERVE_API_KEY'];
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function flags(...argv: string[]): Flags {
  const f = parseFlags(serve, argv);
  if (f === 'help') throw new Error('help');
  return f;
}

function keyFile(text: string): string {
  const d = mkdtempSync(join(tmpdir(), 'pdserve-edge-'));
  dirs.push(d);
  writeFileSync(join(d, 'keys'), text);
  return join(d, 'keys');
}

describe('the edge flags', () => {
  it('take keys from repeated --api-key and from a key file; PDSERVE_API_KEY is a comma-separated list', () => {
    const file = keyFile('# keys\nfile-one\n\nfile-two\n');
    expect(edgeOptionsOf(flags('--api-key', 'k1', '--api-key', 'k2', '--api-key-file', file)).apiKeys).toEqual([
      'k1',
      'k2',
      'file-one',
      'file-two',
    ]);
    process.env['PDSERVE_API_KEY'] = 'e1, e2';
    expect(edgeOptionsOf(flags()).apiKeys).toEqual(['e1', 'e2']);
    expect(edgeOptionsOf(flags('--api-key', 'argv-wins')).apiKeys).toEqual(['argv-wins']);
  });

  it('refuse what cannot work, before anything starts', () => {
    expect(() => edgeOptionsOf(flags('--isolate-cache-per-key'))).toThrow(UsageError);
    expect(() => edgeOptionsOf(flags('--api-key-file', '/nonexistent/keys'))).toThrow(/ENOENT/);
    expect(() => edgeOptionsOf(flags('--api-key-file', keyFile('# only a comment\n')))).toThrow(/no key/);
    expect(() => edgeOptionsOf(flags('--rate-limit', '0'))).toThrow(UsageError);
    expect(() => edgeOptionsOf(flags('--rate-limit-burst', '5'))).toThrow(/needs --rate-limit/);
    expect(() => edgeOptionsOf(flags('--max-concurrent-per-key', '0'))).toThrow(UsageError);
  });

  it('map to the server options', () => {
    const o = edgeOptionsOf(
      flags(
        '--api-key',
        'k',
        '--isolate-cache-per-key',
        '--rate-limit',
        '2.5',
        '--rate-limit-burst',
        '7',
        '--max-concurrent-per-key',
        '3',
        '--write-timeout-ms',
        '1500',
        '--max-prompt-chars',
        '9000',
      ),
    );
    expect(o).toMatchObject({
      apiKeys: ['k'],
      isolateCachePerKey: true,
      limits: { ratePerSecond: 2.5, burst: 7, maxConcurrent: 3 },
      writeTimeoutMs: 1500,
      maxPromptChars: 9000,
      headersTimeoutMs: 10_000,
    });
    expect(o.toolCallParser).toBeUndefined(); // auto: each model's own
    expect(edgeOptionsOf(flags('--tool-call-parser', 'llama3_json')).toolCallParser).toBe('llama3_json');
  });

  it('reach a child gateway with the keys in its environment, not its command line', () => {
    const file = keyFile('file-key\n');
    const child = edgeForChild(
      flags('--api-key', 'secret-1', '--api-key', 'secret-2', '--api-key-file', file, '--isolate-cache-per-key', '--rate-limit', '3'),
    );
    expect(child.args.join(' ')).not.toContain('secret');
    expect(child.args).toEqual(expect.arrayContaining(['--api-key-file', file, '--isolate-cache-per-key', '--rate-limit', '3']));
    expect(child.env).toEqual({ PDSERVE_API_KEY: 'secret-1,secret-2' });
  });
});
