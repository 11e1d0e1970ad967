import { describe, expect, it } from 'vitest';
import { KvEventPublisher } from './kv-event-publisher';
import { sleep, waitFor } from './test-helpers';
import type { KvEventBatch } from './types';

const h = (i: number): string => i.toString(16).padStart(16, '0');

function publisher(options: { flushIntervalMs?: number; maxBatchEvents?: number } = {}) {
  const sent: KvEventBatch[] = [];
  const p = new KvEventPublisher({ publishKv: (batch) => sent.push(batch) }, { worker: 'decode-0', incarnation: 'inc-1', ...options });
  return { p, sent };
}

describe('KvEventPublisher', () => {
  it('flushes on time, merging consecutive events of one kind and tier', async () => {
    const { p, sent } = publisher({ flushIntervalMs: 30, maxBatchEvents: 100 });
    p.stored([h(1)], 'device');
    p.stored([h(2)], 'device');
    p.removed([h(3)], 'device');
    p.stored([h(4)], 'host');
    expect(sent).toEqual([]);
    await waitFor('time flush', () => sent.length === 1, 1_000);
    expect(sent[0]).toEqual({
      worker: 'decode-0',
      incarnation: 'inc-1',
      seq: 1,
      events: [
        { kind: 'stored', tier: 'device', hashes: [h(1), h(2)] },
        { kind: 'removed', tier: 'device', hashes: [h(3)] },
        { kind: 'stored', tier: 'host', hashes: [h(4)] },
      ],
    });
    await sleep(60);
    expect(sent).toHaveLength(1); // no empty batches
  });

  it('sends full batches at once, splitting bursts, and the remainder on time', async () => {
    const { p, sent } = publisher({ flushIntervalMs: 40, maxBatchEvents: 4 });
    p.stored([h(1), h(2), h(3)], 'device');
    expect(sent).toHaveLength(0);
    p.removed([h(4), h(5), h(6), h(7), h(8), h(9)], 'disk');
    expect(sent.map((b) => b.seq)).toEqual([1, 2]);
    await waitFor('remainder', () => sent.length === 3, 1_000);
    expect(sent.map((b) => b.events.flatMap((e) => ('hashes' in e ? e.hashes : ['*'])).length)).toEqual([4, 4, 1]);
    expect(sent[0]?.events).toEqual([
      { kind: 'stored', tier: 'device', hashes: [h(1), h(2), h(3)] },
      { kind: 'removed', tier: 'disk', hashes: [h(4)] },
    ]);
    expect(sent[2]?.events).toEqual([{ kind: 'removed', tier: 'disk', hashes: [h(9)] }]);
    expect(p.seq).toBe(3);
    p.stored([h(10), h(11), h(12), h(13)], 'host'); // exactly full: nothing left to wait for
    expect(sent).toHaveLength(4);
    await sleep(80);
    expect(sent).toHaveLength(4);
  });

  it('sends cleared at once after what was pending, and stops after close', () => {
    const { p, sent } = publisher({ flushIntervalMs: 60_000 });
    p.stored([h(1)], 'device');
    p.cleared();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.events).toEqual([{ kind: 'stored', tier: 'device', hashes: [h(1)] }, { kind: 'cleared' }]);
    p.stored([h(2)], 'device');
    p.close();
    expect(sent).toHaveLength(2);
    p.stored([h(3)], 'device');
    p.flush();
    expect(sent).toHaveLength(2);
  });

  it('rejects malformed hashes', () => {
    const { p } = publisher();
    expect(() => p.stored(['xyz'], 'device')).toThrow(/16 lowercase hex/);
    p.close();
  });
});
