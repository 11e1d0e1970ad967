// Test support: plain greedy loops over the tiny model with onnxruntime-node, used as the oracle in this
// folder's tests. Three ways to get the same tokens: KV cache, full recomputation, left-padded batch.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

export interface TinyRun {
  readonly session: ort.InferenceSession;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocab: number;
}

export interface GreedyResult {
  readonly tokens: number[];
  /** Top-1 minus top-2 logit at each generated step. */
  readonly margins: number[];
}

type Cache = { key: ort.Tensor; value: ort.Tensor }[];

export async function openTinyRun(dir: string): Promise<TinyRun> {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
  // One intra-op thread: the test machine is shared, and it keeps reductions in a fixed order.
  const session = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  return {
    session,
    layers: cfg['num_hidden_layers']!,
    kvHeads: cfg['num_key_value_heads']!,
    headDim: cfg['head_dim']!,
    vocab: cfg['vocab_size']!,
  };
}

const i64 = (rows: number[][]): ort.Tensor =>
  new ort.Tensor(
    'int64',
    BigInt64Array.from(rows.flat(), (v) => BigInt(v)),
    [rows.length, rows[0]!.length],
  );

function emptyCache(run: TinyRun, batch: number): Cache {
  const t = (): ort.Tensor => new ort.Tensor('float32', new Float32Array(0), [batch, run.kvHeads, 0, run.headDim]);
  return Array.from({ length: run.layers }, () => ({ key: t(), value: t() }));
}

/** One forward pass; returns the last position's logits per row, the new cache and the new tokens' KV alone. */
export async function forward(
  run: TinyRun,
  ids: number[][],
  mask: number[][],
  positions: number[][],
  past: Cache,
): Promise<{ last: Float32Array[]; present: Cache; newKv: Cache }> {
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(ids),
    attention_mask: i64(mask),
    position_ids: i64(positions),
    num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.of(1n), []),
  };
  past.forEach((p, i) => {
    feeds[`past_key_values.${i}.key`] = p.key;
    feeds[`past_key_values.${i}.value`] = p.value;
  });
  const out = await run.session.run(feeds);
  const logits = out['logits']!.data as Float32Array;
  // The built-in graph emits the last position only; other graphs emit every position.
  const seq = out['logits']!.dims[1]!;
  const last = ids.map((_, b) => logits.slice((b * seq + seq - 1) * run.vocab, (b * seq + seq) * run.vocab));
  const present = past.map((_, i) => ({ key: out[`present.${i}.key`]!, value: out[`present.${i}.value`]! }));
  const newKv = past.map((_, i) => ({ key: out[`new_key_values.${i}.key`]!, value: out[`new_key_values.${i}.value`]! }));
  return { last, present, newKv };
}

export function argmaxWithMargin(logits: Float32Array): { token: number; margin: number } {
  let best = 0;
  let second = -Infinity;
  for (let i = 1; i < logits.length; i++) {
    if (logits[i]! > logits[best]!) {
      second = logits[best]!;
      best = i;
    } else if (logits[i]! > second) second = logits[i]!;
  }
  return { token: best, margin: logits[best]! - second };
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

/** Greedy decoding feeding present back as past. Stops early at any of `stopIds`. */
export async function greedyCached(run: TinyRun, prompt: number[], steps: number, stopIds: readonly number[] = []): Promise<GreedyResult> {
  const tokens: number[] = [];
  const margins: number[] = [];
  let cache = emptyCache(run, 1);
  let ids = prompt;
  let pos = 0;
  while (tokens.length < steps) {
    const { last, present } = await forward(run, [ids], [Array(pos + ids.length).fill(1)], [range(pos, ids.length)], cache);
    const { token, margin } = argmaxWithMargin(last[0]!);
    tokens.push(token);
    margins.push(margin);
    if (stopIds.includes(token)) break;
    cache = present;
    pos += ids.length;
    ids = [token];
  }
  return { tokens, margins };
}

/** Greedy decoding recomputing the whole sequence every step (no cache). */
export async function greedyFull(run: TinyRun, prompt: number[], steps: number): Promise<GreedyResult> {
  const seq = [...prompt];
  const tokens: number[] = [];
  const margins: number[] = [];
  for (let i = 0; i < steps; i++) {
    const { last } = await forward(run, [seq], [Array(seq.length).fill(1)], [range(0, seq.length)], emptyCache(run, 1));
    const { token, margin } = argmaxWithMargin(last[0]!);
    tokens.push(token);
    margins.push(margin);
    seq.push(token);
  }
  return { tokens, margins };
}

/**
 * Greedy decoding of several prompts in one left-padded batch: attention_mask 0 on the pad,
 * position_ids = cumsum(mask) - 1 clamped at 0.
 */
export async function greedyBatch(run: TinyRun, prompts: number[][], steps: number, padId = 0): Promise<GreedyResult[]> {
  const width = Math.max(...prompts.map((p) => p.length));
  const mask = prompts.map((p) => [...Array(width - p.length).fill(0), ...Array(p.length).fill(1)] as number[]);
  let ids = prompts.map((p) => [...Array(width - p.length).fill(padId), ...p] as number[]);
  let positions = mask.map((row) => {
    let c = 0;
    return row.map((m) => Math.max((c += m) - 1, 0));
  });
  const results = prompts.map(() => ({ tokens: [] as number[], margins: [] as number[] }));
  let cache = emptyCache(run, prompts.length);
  for (let step = 0; step < steps; step++) {
    const { last, present } = await forward(run, ids, mask, positions, cache);
    const next = last.map((l, b) => {
      const { token, margin } = argmaxWithMargin(l);
      results[b]!.tokens.push(token);
      results[b]!.margins.push(margin);
      return token;
    });
    cache = present;
    ids = next.map((t) => [t]);
    positions = positions.map((row) => [row[row.length - 1]! + 1]);
    mask.forEach((row) => row.push(1));
  }
  return results;
}
