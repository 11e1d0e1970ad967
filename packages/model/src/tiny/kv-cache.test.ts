// The graph's I/O contract under onnxruntime-node: cache on = cache off, batched left-padded = alone.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from './index';
import { forward, greedyBatch, greedyCached, greedyFull, openTinyRun, type GreedyResult, type TinyRun } from './ort-greedy';

// Default head ratio (8 query heads over 2 KV heads), small everything else.
const SHAPE = { layers: 2, hidden: 64, heads: 8, kvHeads: 2, ffn: 128, seed: 3 } as const;
const PROMPTS = [
  [1, 22557, 1526],
  [1, 415, 4996, 17354, 1701, 29916],
  [1, 306],
  [1, 1724, 338, 278, 7483, 310, 3444, 29973, 13, 13],
  [1, 29871, 13],
  [1, 18637, 29892, 920, 526, 366, 2599, 29973],
  [1],
  [1, 3532, 1792, 4629, 5099],
];

let root: string;
let run: TinyRun;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pdserve-tiny-kv-'));
  await buildTinyModel({ out: root, ...SHAPE });
  run = await openTinyRun(root);
});
afterAll(async () => {
  await run?.session.release();
  await rm(root, { recursive: true, force: true });
});

describe('tiny model with onnxruntime-node', () => {
  it("declares the Optimum I/O names, and the new KV alone and the logits' argmax after the logits", () => {
    const pkv = [0, 1].flatMap((i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]);
    expect(run.session.inputNames).toEqual(['input_ids', 'attention_mask', 'position_ids', 'num_logits_to_keep', ...pkv]);
    expect(run.session.outputNames).toEqual([
      'logits',
      ...pkv.map((n) => n.replace('past_key_values', 'new_key_values')),
      'logits_argmax',
      ...pkv.map((n) => n.replace('past_key_values', 'present')),
    ]);
  });

  it('returns present = past ++ new along the sequence axis, KV heads not repeated', async () => {
    const empty = (): ort.Tensor => new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 8]);
    const first = await forward(
      run,
      [[1, 22557, 1526]],
      [[1, 1, 1]],
      [[0, 1, 2]],
      [0, 1].map(() => ({ key: empty(), value: empty() })),
    );
    expect(first.present[0]!.key.dims).toEqual([1, 2, 3, 8]);
    const next = await forward(run, [[42, 43]], [[1, 1, 1, 1, 1]], [[3, 4]], first.present);
    expect(next.present[1]!.value.dims).toEqual([1, 2, 5, 8]);
    const pastKey = first.present[1]!.key.data as Float32Array;
    const presentKey = next.present[1]!.key.data as Float32Array;
    // Head 1's first three rows are the old cache, unchanged.
    expect(presentKey.slice(5 * 8, 5 * 8 + 3 * 8)).toEqual(pastKey.slice(3 * 8, 6 * 8));
    // new_key_values is present's right end: each head's last two rows, bit for bit.
    const newKey = next.newKv[1]!.key;
    expect(newKey.dims).toEqual([1, 2, 2, 8]);
    for (const h of [0, 1])
      expect((newKey.data as Float32Array).slice(h * 16, (h + 1) * 16)).toEqual(presentKey.slice((h * 5 + 3) * 8, (h + 1) * 5 * 8));
    expect(next.newKv[0]!.value.data).toEqual(
      Float32Array.from([0, 1].flatMap((h) => [...(next.present[0]!.value.data as Float32Array).slice((h * 5 + 3) * 8, (h + 1) * 5 * 8)])),
    );
  });

  it('generates the same greedy tokens with the KV cache as with full recomputation', async () => {
    for (const prompt of PROMPTS) {
      const cached = await greedyCached(run, prompt, 12);
      const full = await greedyFull(run, prompt, 12);
      expect(cached.tokens, `prompt ${prompt.join(',')}`).toEqual(full.tokens);
    }
  });

  it('gives each row of a left-padded batch the tokens it gets alone, through prefill and decode', async () => {
    const batch = await greedyBatch(run, PROMPTS, 10);
    for (const [i, prompt] of PROMPTS.entries()) {
      const alone = await greedyCached(run, prompt, 10);
      expect(batch[i]!.tokens, `row ${i}`).toEqual(alone.tokens);
    }
  });

  it("returns the last num_logits_to_keep positions' logits, every position for 0", async () => {
    const ids = [1, 415, 4996, 17354, 1701];
    const logitsFor = async (keep: number): Promise<ort.Tensor> =>
      (
        await run.session.run({
          input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, 5]),
          attention_mask: new ort.Tensor('int64', new BigInt64Array(5).fill(1n), [1, 5]),
          position_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n, 4n]), [1, 5]),
          num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []),
          ...Object.fromEntries(
            [0, 1].flatMap((i) =>
              ['key', 'value'].map((kv) => [`past_key_values.${i}.${kv}`, new ort.Tensor('float32', new Float32Array(0), [1, 2, 0, 8])]),
            ),
          ),
        })
      )['logits']!;
    const all = await logitsFor(0);
    const two = await logitsFor(2);
    expect(all.dims).toEqual([1, 5, run.vocab]);
    expect(two.dims).toEqual([1, 2, run.vocab]);
    const tail = (all.data as Float32Array).subarray(3 * run.vocab);
    const got = two.data as Float32Array;
    for (let i = 0; i < got.length; i += 97) expect(got[i]).toBeCloseTo(tail[i]!, 4);
  });

  it('keeps logits finite for rows that are all padding', async () => {
    const out = await run.session.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 0n, 1n, 0n, 1n, 306n]), [2, 3]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from([0n, 0n, 1n, 0n, 1n, 1n]), [2, 3]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from([0n, 0n, 0n, 0n, 0n, 1n]), [2, 3]),
      num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.of(1n), []),
      ...Object.fromEntries(
        [0, 1].flatMap((i) =>
          ['key', 'value'].map((kv) => [`past_key_values.${i}.${kv}`, new ort.Tensor('float32', new Float32Array(0), [2, 2, 0, 8])]),
        ),
      ),
    });
    expect((out['logits']!.data as Float32Array).every(Number.isFinite)).toBe(true);
  });

  it('generates varied tokens with comfortable top-1 margins', async () => {
    const runs: GreedyResult[] = [];
    for (const p of PROMPTS) runs.push(await greedyCached(run, p, 16));
    const firsts = new Set(runs.map((r) => r.tokens[0]));
    expect(firsts.size).toBeGreaterThanOrEqual(PROMPTS.length - 1);
    for (const r of runs) expect(new Set(r.tokens).size).toBeGreaterThan(8);
    // Float noise between batched and unbatched logits is ~1e-5; these margins are orders above it.
    const margins = runs.flatMap((r) => r.margins).sort((a, b) => a - b);
    expect(margins[0]).toBeGreaterThan(1e-3);
    expect(margins[Math.floor(margins.length / 2)]).toBeGreaterThan(0.1);
  });
});
