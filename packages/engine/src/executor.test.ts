// The executor's decode path as speculative decoding drives it: rows of several new tokens, logits for
// each of them, and rollback of the rejected ones, with sequences joining, leaving and returning.
import { BlockPool, type KvLayout } from '@pdserve/kv-cache';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type ModelSpec } from '@pdserve/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchExecutor, type ExecRow } from './executor';

let spec: ModelSpec;
let runner: ModelRunner;
beforeAll(async () => {
  spec = loadModelSpec(await ensureTinyModel());
  runner = await ModelRunner.create(spec, { intraOpThreads: 1 });
});
afterAll(async () => {
  await runner?.release();
});

function argmax(row: Float32Array): number {
  let best = 0;
  for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
  return best;
}

/** A pool of `blocks` blocks of the model's KV, and prompts in it: `len` tokens from `salt`, with blocks for `room` more. */
function promptPool(blocks: number) {
  const layout: KvLayout = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize: 16 };
  const pool = new BlockPool(layout, blocks);
  const prompt = (seqId: number, len: number, salt: number, room = 0) => ({
    seqId,
    tokenIds: Array.from({ length: len }, (_, i) => 3 + ((i * 7919 + salt) % 31000)),
    pastLen: 0,
    blockTable: Array.from({ length: Math.ceil((len + room) / 16) }, () => pool.allocate()!),
  });
  return { layout, pool, prompt };
}
type Prompt = ReturnType<ReturnType<typeof promptPool>['prompt']>;

/** A deterministic drafter that is right about two times in three: the reference's tokens, some corrupted. */
function draft(reference: readonly number[], from: number, k: number, salt: number): number[] {
  return Array.from({ length: k }, (_, j) => {
    const t = reference[from + j] ?? 7;
    return (salt + j) % 3 === 2 ? (t + 1) % 32000 : t;
  });
}

interface Seq {
  readonly id: number;
  readonly prompt: number[];
  readonly want: readonly number[];
  readonly blockTable: number[];
  /** Tokens whose KV is in the blocks. */
  pastLen: number;
  out: number[];
}

describe('BatchExecutor decode rows for speculative decoding', () => {
  it('verifying K+1 tokens per row and rolling back rejected ones gives the reference tokens', async () => {
    const N = 24;
    const layout: KvLayout = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize: 16 };
    const pool = new BlockPool(layout, 64);
    const exec = new BatchExecutor(runner, layout, pool.data);
    const prompts = [
      [1, 415, 4996, 17354, 1701, 29916, 975, 278, 17366, 11203],
      [1, 306, 763],
      [1, 1724, 338, 278, 7483, 310, 3444, 29973, 13, 13, 450, 7483, 310, 3444, 338, 3681, 29889, 13, 1576],
      [1, 3532, 1792, 4629, 5099, 29871],
    ];
    const greedy = samplingParams({ temperature: 0, maxTokens: N, ignoreEos: true });
    const seqs: Seq[] = [];
    for (const [i, prompt] of prompts.entries()) {
      const want = (await referenceGenerate(runner, prompt, greedy)).tokenIds;
      const blocks = Math.ceil((prompt.length + N + 8) / 16);
      seqs.push({ id: i + 1, prompt, want, blockTable: Array.from({ length: blocks }, () => pool.allocate()!), pastLen: 0, out: [] });
    }

    // Prefill every prompt in one batch; each row's first token comes from its last position.
    const first = await exec.run({
      kind: 'prefill',
      rows: seqs.map((s) => ({ seqId: s.id, tokenIds: s.prompt, pastLen: 0, blockTable: s.blockTable })),
    });
    seqs.forEach((s, i) => {
      s.out.push(argmax(first.logits.subarray(i * spec.vocabSize, (i + 1) * spec.vocabSize)));
      s.pastLen = s.prompt.length;
    });

    const kinds = { multi: 0, rollback: 0, absent: 0 };
    for (let step = 0; seqs.some((s) => s.out.length < N); step++) {
      // Sequence 2 sits out every fifth step (its resident row is dropped and copied in again later);
      // the rows come in a different order each step.
      const active = seqs.filter((s) => s.out.length < N && !(s.id === 2 && step % 5 === 4));
      if (active.length < seqs.filter((s) => s.out.length < N).length) kinds.absent++;
      const order = step % 2 === 0 ? active : [...active].reverse();
      const rows: ExecRow[] = order.map((s) => {
        const k = Math.min((s.id + step) % 4, N - s.out.length - 1); // 0..3 draft tokens: mixed row lengths
        const tokens = [s.out.at(-1)!, ...draft(s.want, s.out.length, k, step + s.id)];
        return { seqId: s.id, tokenIds: tokens, pastLen: s.pastLen, blockTable: s.blockTable, numLogits: tokens.length };
      });
      if (rows.some((r) => r.tokenIds.length > 1)) kinds.multi++;
      const res = await exec.run({ kind: 'decode', rows });
      let at = 0;
      rows.forEach((r, i) => {
        const s = order[i]!;
        const picks = Array.from({ length: r.tokenIds.length }, (_, j) =>
          argmax(res.logits.subarray((at + j) * spec.vocabSize, (at + j + 1) * spec.vocabSize)),
        );
        at += r.tokenIds.length;
        // Accept draft tokens while the model agrees, then take the model's own token.
        let accepted = 0;
        while (accepted < r.tokenIds.length - 1 && picks[accepted] === r.tokenIds[accepted + 1]) accepted++;
        s.out.push(...r.tokenIds.slice(1, 1 + accepted), picks[accepted]!);
        // KV is kept for the fed token and the accepted drafts; the rejected drafts' KV is rolled back.
        s.pastLen += 1 + accepted;
        if (accepted < r.tokenIds.length - 1) kinds.rollback++;
      });
      expect(at * spec.vocabSize).toBe(res.logits.length);
    }
    for (const s of seqs) expect(s.out.slice(0, N), `sequence ${s.id}`).toEqual(s.want);
    expect(kinds.multi).toBeGreaterThan(3);
    expect(kinds.rollback).toBeGreaterThan(3);
    expect(kinds.absent).toBeGreaterThan(0);
  });

  it('a steady decode batch copies no KV; a leaving row copies none, a joining row only its own', async () => {
    const layout: KvLayout = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize: 16 };
    const pool = new BlockPool(layout, 32);
    const exec = new BatchExecutor(runner, layout, pool.data);
    const rows = [
      {
        seqId: 1,
        tokenIds: [1, 22557, 1526, 3186, 29892, 920, 526, 366, 2599, 29973],
        pastLen: 0,
        blockTable: [pool.allocate()!, pool.allocate()!],
      },
      { seqId: 2, tokenIds: [1, 306, 763, 263], pastLen: 0, blockTable: [pool.allocate()!, pool.allocate()!] },
      { seqId: 3, tokenIds: [1, 450, 4996], pastLen: 0, blockTable: [pool.allocate()!, pool.allocate()!] },
    ];
    const pre = await exec.run({ kind: 'prefill', rows });
    expect(pre.gatheredTokens).toBe(0);
    const pastLen = rows.map((r) => r.tokenIds.length);
    const step = async (which: number[]): Promise<number> => {
      const res = await exec.run({ kind: 'decode', rows: which.map((i) => ({ ...rows[i]!, tokenIds: [5], pastLen: pastLen[i]! })) });
      for (const i of which) pastLen[i]! += 1;
      return res.gatheredTokens;
    };
    expect(await step([0, 1, 2])).toBe(10 + 4 + 3); // the first decode batch copies its rows in
    expect(await step([0, 1, 2])).toBe(0);
    expect(await step([2, 0])).toBe(0); // sequence 2 leaves: the last row takes its place
    expect(await step([0, 2])).toBe(0);
    expect(await step([0, 2, 1])).toBe(4 + 2); // and comes back: only its own 6 tokens are copied in
    expect(await step([1, 0, 2])).toBe(0);
  });

  it("argmaxOnly: each row's argmax of the logits, in the caller's row order, and no logits", async () => {
    // Two executors doing the same, one asking for logits and one for the argmax only.
    const make = () => {
      const { layout, pool, prompt } = promptPool(16);
      return { exec: new BatchExecutor(runner, layout, pool.data), rows: [prompt(1, 20, 3, 8), prompt(2, 7, 5, 8), prompt(3, 12, 9, 8)] };
    };
    const a = make();
    const b = make();
    for (const x of [a, b]) await x.exec.run({ kind: 'prefill', rows: x.rows });
    const pastLen = a.rows.map((r) => r.tokenIds.length);
    const V = spec.vocabSize;
    // Rows in other orders than their slots (a row leaving puts the last in its place), and back.
    for (const [k, which] of [
      [0, 1, 2],
      [2, 0],
      [1, 0, 2],
      [2, 1, 0],
    ].entries()) {
      const batch = (x: typeof a) => ({
        kind: 'decode' as const,
        rows: which.map((i) => ({ ...x.rows[i]!, tokenIds: [7 + k], pastLen: pastLen[i]! })),
      });
      const full = await a.exec.run(batch(a));
      const best = await b.exec.run({ ...batch(b), argmaxOnly: true });
      expect(best.logits.length).toBe(0);
      expect([...best.argmax!]).toEqual(which.map((_, j) => argmax(full.logits.subarray(j * V, (j + 1) * V))));
      for (const i of which) pastLen[i]! += 1;
    }
  });

  it('a row staged block by block joins an empty batch copying only the blocks not staged, with the same logits', async () => {
    const layout: KvLayout = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize: 16 };
    const pool = new BlockPool(layout, 16);
    const prompt = Array.from({ length: 70 }, (_, i) => 3 + ((i * 7919) % 31000));
    const blockTable = Array.from({ length: 6 }, () => pool.allocate()!);
    const plain = new BatchExecutor(runner, layout, pool.data);
    await plain.run({ kind: 'prefill', rows: [{ seqId: 1, tokenIds: prompt, pastLen: 0, blockTable }] });
    const blockOf = (i: number): Float32Array => new Float32Array(pool.bytes(blockTable[i]!).slice().buffer);
    const row = { seqId: 1, tokenIds: [5], pastLen: 70, blockTable };
    const want = await plain.run({ kind: 'decode', rows: [row] });
    expect(want.gatheredTokens).toBe(70);

    const staged = new BatchExecutor(runner, layout, pool.data);
    staged.stage({ key: 'other', promptLen: 70, fromBlock: 0, blocks: [blockOf(0)] }); // replaced by the next prompt
    staged.stage({ key: 'p', promptLen: 70, fromBlock: 0, blocks: [blockOf(0), blockOf(1)] });
    staged.stage({ key: 'p', promptLen: 70, fromBlock: 3, blocks: [blockOf(3)] }); // not the next: ignored
    staged.stage({ key: 'p', promptLen: 70, fromBlock: 2, blocks: [blockOf(2), blockOf(3)] });
    const got = await staged.run({ kind: 'decode', rows: [{ ...row, stagedKey: 'p' }] });
    expect(got.gatheredTokens).toBe(70 - 64);
    expect(got.logits).toEqual(want.logits);
    // Used once: the next decode is a steady one, and a row of another key is copied in whole.
    const next = await staged.run({ kind: 'decode', rows: [{ ...row, tokenIds: [6], pastLen: 71 }] });
    expect(next.gatheredTokens).toBe(0);
    expect(next.logits).toEqual((await plain.run({ kind: 'decode', rows: [{ ...row, tokenIds: [6], pastLen: 71 }] })).logits);
    staged.stage({ key: 'q', promptLen: 70, fromBlock: 0, blocks: [blockOf(0)] });
    expect((await staged.run({ kind: 'decode', rows: [{ ...row, seqId: 2, stagedKey: 'p' }] })).gatheredTokens).toBe(70);
  });

  it('a sequence decoded alone gets the same logits to the last bit whatever was decoded before it', async () => {
    const { layout, pool, prompt } = promptPool(32);
    const seq = (seqId: number, len: number, salt: number): Prompt => prompt(seqId, len, salt, 4);
    const decodeAlone = async (exec: BatchExecutor, row: Prompt, steps: number): Promise<Float32Array[]> => {
      await exec.run({ kind: 'prefill', rows: [row] });
      const out: Float32Array[] = [];
      for (let s = 0; s < steps; s++) {
        const pastLen = row.tokenIds.length + s;
        out.push((await exec.run({ kind: 'decode', rows: [{ ...row, tokenIds: [5 + s], pastLen }] })).logits);
      }
      return out;
    };
    const x = seq(1, 20, 0);
    const fresh = await decodeAlone(new BatchExecutor(runner, layout, pool.data), x, 3);
    // Another executor first decodes other sequences, one after the other (its arena left wider, and
    // columns in use), which then leave.
    const used = new BatchExecutor(runner, layout, pool.data);
    await decodeAlone(used, seq(2, 70, 11), 2);
    await decodeAlone(used, seq(3, 24, 22), 2);
    const again = await decodeAlone(used, x, 3);
    // Logits compared value by value (a failing toEqual would print 96,000 floats).
    expect(again.map((l, s) => l.reduce((n, v, i) => n + (v === fresh[s]![i] ? 0 : 1), 0))).toEqual([0, 0, 0]);
  });

  it("prefills gather their past into the executor's kept buffers: the same logits as a fresh executor's", async () => {
    const { layout, pool, prompt: seq } = promptPool(32);
    // Each prompt in two chunks: the second gathers the first's KV as its past.
    const chunked = async (exec: BatchExecutor, rows: Prompt[], split: number[]): Promise<Float32Array> => {
      await exec.run({ kind: 'prefill', rows: rows.map((r, i) => ({ ...r, tokenIds: r.tokenIds.slice(0, split[i]), pastLen: 0 })) });
      return (
        await exec.run({ kind: 'prefill', rows: rows.map((r, i) => ({ ...r, tokenIds: r.tokenIds.slice(split[i]), pastLen: split[i]! })) })
      ).logits;
    };
    const b = seq(2, 30, 5);
    const c = seq(3, 50, 9);
    const fresh = await chunked(new BatchExecutor(runner, layout, pool.data), [b, c], [20, 40]);
    // The kept buffers first hold a longer past (another prompt's), then the two rows' (the shorter one padded).
    const used = new BatchExecutor(runner, layout, pool.data);
    await chunked(used, [seq(1, 120, 1)], [100]);
    const again = await chunked(used, [b, c], [20, 40]);
    expect(again.length).toBe(fresh.length);
    expect(again.reduce((n, v, i) => n + (v === fresh[i] ? 0 : 1), 0)).toBe(0);
  });
});
