import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MOONCAKE_TRACE, readTrace, TraceError, parseTrace, type Trace } from './trace';
import { replayInputLength, traceToRequests } from './trace-replay';
import type { BenchRequest } from './workloads';

const tokensOf = (r: BenchRequest): readonly number[] => r.parts[0]!.tokenIds;

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}

describe('readTrace', () => {
  it('reads the shared Mooncake trace', async () => {
    const trace = await readTrace(MOONCAKE_TRACE);
    expect(trace.records.length).toBe(3993);
    expect(trace.records[0]).toMatchObject({ timestamp: 0, inputLength: 40160, outputLength: 6 });
    expect(trace.records[0]!.hashIds.length).toBe(79);
  });

  it('names the line of garbage', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pdserve-trace-'));
    const file = join(dir, 'bad.jsonl');
    writeFileSync(file, '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n\n{"timestamp": 5, oops}\n');
    await expect(readTrace(file)).rejects.toThrow(`${file}:3: not JSON`);
    const e = (() => {
      try {
        parseTrace(
          '{"timestamp": 1, "input_length": 3, "output_length": 1, "hash_ids": [1]}\n{"timestamp": 2, "input_length": 3, "output_length": 1, "hash_ids": ["x"]}',
          'mem',
        );
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(TraceError);
    expect((e as TraceError).line).toBe(2);
    expect(() => parseTrace('{"timestamp": 1, "input_length": 0, "output_length": 1, "hash_ids": []}', 'm')).toThrow("m:1: 'input_length'");
    expect(() => parseTrace('[1, 2]', 'm')).toThrow('m:1: expected a JSON object');
    expect(() => parseTrace('\n\n', 'm')).toThrow('no records');
  });
});

describe('traceToRequests', () => {
  const small: Trace = parseTrace(
    [
      { timestamp: 100, input_length: 1100, output_length: 40, hash_ids: [1, 2, 3] },
      { timestamp: 300, input_length: 1536, output_length: 10, hash_ids: [1, 2, 9] },
      { timestamp: 700, input_length: 600, output_length: 1, hash_ids: [1, 5] },
      { timestamp: 900, input_length: 20, output_length: 3, hash_ids: [3] },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );

  it('scales lengths and arrival times', () => {
    const reqs = traceToRequests(small, { blockScale: 16, lengthScale: 0.5, timeScale: 0.1 });
    expect(reqs.map((r) => tokensOf(r).length)).toEqual([34, 48, 19, 1]);
    expect(reqs.map((r) => r.maxTokens)).toEqual([20, 5, 1, 2]);
    expect(reqs.map((r) => r.arrivalMs)).toEqual([0, 20, 60, 80]);
    expect(replayInputLength(1100, 16, 512)).toBe(34);
    const capped = traceToRequests(small, { blockScale: 16, maxInputLen: 20, maxTokens: 4, maxRequests: 2 });
    expect(capped.map((r) => [tokensOf(r).length, r.maxTokens])).toEqual([
      [20, 4],
      [20, 4],
    ]);
  });

  it('is deterministic, keyed by hash id, and draws ids from the safe range', () => {
    const a = traceToRequests(small, { blockScale: 16, seed: 3 });
    expect(traceToRequests(small, { blockScale: 16, seed: 3 })).toEqual(a);
    expect(traceToRequests(small, { blockScale: 16, seed: 4 })[0]).not.toEqual(a[0]);
    // Request 3's only (partial) block has hash id 3: the first tokens of request 0's third block.
    expect(tokensOf(a[3]!)).toEqual(tokensOf(a[0]!).slice(32, 33));
    for (const r of a) for (const t of tokensOf(r)) expect(t >= 100 && t < 30_000).toBe(true);
  });

  it('keeps the prefix structure of the shared trace: k shared hash ids ⇒ exactly k × blockScale shared tokens', async () => {
    const trace = await readTrace(MOONCAKE_TRACE);
    const blockScale = 16;
    const reqs = traceToRequests(trace, { blockScale });
    expect(reqs.length).toBe(3993);
    // Pairs that share a first block (grouped by it), and neighbours (mostly sharing nothing).
    const byFirst = new Map<number, number[]>();
    trace.records.forEach((r, i) => {
      const g = byFirst.get(r.hashIds[0]!) ?? [];
      g.push(i);
      byFirst.set(r.hashIds[0]!, g);
    });
    const pairs: [number, number][] = [];
    for (const g of byFirst.values()) for (let x = 1; x < Math.min(g.length, 30); x++) pairs.push([g[0]!, g[x]!], [g[x - 1]!, g[x]!]);
    for (let i = 0; i + 1 < reqs.length; i += 7) pairs.push([i, i + 1]);
    let checked = 0;
    let sharedBlocks = 0;
    for (const [i, j] of pairs) {
      const a = trace.records[i]!.hashIds;
      const b = trace.records[j]!.hashIds;
      let k = 0;
      while (k < a.length && k < b.length && a[k] === b[k]) k++;
      // Only whole blocks: a shared last block may be partial in one of the two.
      if (k >= a.length || k >= b.length) continue;
      expect(commonPrefix(tokensOf(reqs[i]!), tokensOf(reqs[j]!))).toBe(k * blockScale);
      checked++;
      sharedBlocks += k;
    }
    expect(checked).toBeGreaterThan(1000);
    expect(sharedBlocks).toBeGreaterThan(1000);
  });
});
