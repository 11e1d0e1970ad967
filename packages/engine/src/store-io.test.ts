// The engine's side of the kv-store: evicted blocks are handed to an offload sink (copied before reuse),
// and prefetched prefix blocks enter the prefix cache verified, so output stays the reference's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type SamplingParams } from '@pdserve/model';
import { LLMEngine, type GenerateOutput } from './index';

let dir: string;
let runner: ModelRunner;
let a: LLMEngine;
let b: LLMEngine;
const offloaded = new Map<string, Uint8Array>();
let room = Infinity;

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  [a, b] = await Promise.all([LLMEngine.create({ modelDir: dir, modelId: 'tiny' }), LLMEngine.create({ modelDir: dir, modelId: 'tiny' })]);
  a.offload({ offer: (hash, encode) => offloaded.size < room && offloaded.set(hash, encode()) });
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close(), runner?.release()]);
});

const prompt = (seed: number, len: number): number[] => [
  1,
  ...Array.from({ length: len - 1 }, (_, i) => 3 + ((seed * 7919 + i * 104729) % 31000)),
];

async function tokens(it: AsyncIterable<GenerateOutput>): Promise<number[]> {
  const out: number[] = [];
  for await (const o of it) out.push(...o.tokenIds);
  return out;
}

async function roundTrip(seed: number, params: SamplingParams, corruptBlock?: number) {
  const ids = prompt(seed, 100); // 6 full blocks of 16, the last prompt token in block 7
  offloaded.clear();
  await tokens(a.generate({ requestId: `a${seed}`, promptTokenIds: ids, sampling: params }));
  a.pool.evictFree();
  const hashes = Array.from({ length: 6 }, (_, i) => i);
  // evictFree gives the tail first; the chain order is the reverse.
  const chain = [...offloaded.values()].reverse();
  if (corruptBlock !== undefined) chain[corruptBlock]![200]! ^= 0x55;
  const before = b.stats();
  expect(chain).toHaveLength(hashes.length);
  const out = await tokens(
    b.generate({ requestId: `b${seed}`, promptTokenIds: ids, sampling: params, prefetched: { fromBlock: 0, blocks: chain } }),
  );
  const after = b.stats();
  const ref = await referenceGenerate(runner, ids, params);
  return {
    out,
    ref: ref.tokenIds,
    computed: after.prefillTokensComputed - before.prefillTokensComputed,
    prefetched: after.prefetchedTokens - before.prefetchedTokens,
    rejects: after.prefetchRejects - before.prefetchRejects,
  };
}

describe('engine and the kv-store', () => {
  it('offloads evicted blocks and takes prefetched ones as prefix hits: greedy output is the reference', async () => {
    const r = await roundTrip(1, samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true }));
    expect(r.out).toEqual(r.ref);
    expect(r.prefetched).toBe(96);
    expect(r.computed).toBe(4);
  });

  it('seeded sampling too', async () => {
    const r = await roundTrip(2, samplingParams({ temperature: 0.9, seed: 3, maxTokens: 8, ignoreEos: true }));
    expect(r.out).toEqual(r.ref);
    expect(r.computed).toBe(4);
  });

  it('a corrupt prefetched block is refused and everything from it on is recomputed', async () => {
    const r = await roundTrip(3, samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true }), 2);
    expect(r.out).toEqual(r.ref);
    expect(r.rejects).toBe(1);
    expect(r.prefetched).toBe(32);
    expect(r.computed).toBe(100 - 32);
  });

  it('a full sink drops offloads without stalling the engine', async () => {
    room = 2;
    offloaded.clear();
    const ids = prompt(4, 100);
    await tokens(a.generate({ requestId: 'full', promptTokenIds: ids, sampling: samplingParams({ temperature: 0, maxTokens: 2 }) }));
    a.pool.evictFree();
    expect(offloaded.size).toBe(2);
    room = Infinity;
  });
});
