// Prefill on one engine, decode on another: the KV moves as encoded blocks and the tokens stay the
// reference's, greedy and seeded, with and without a prefix the decode side already holds.
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams, type SamplingParams } from '@pdserve/model';
import { LLMEngine, type GenerateOutput, type PrefilledKv } from './index';

let dir: string;
let runner: ModelRunner;
let prefill: LLMEngine;
let decode: LLMEngine;

beforeAll(async () => {
  dir = await ensureTinyModel();
  runner = await ModelRunner.create(loadModelSpec(dir));
  prefill = await LLMEngine.create({ modelDir: dir, modelId: 'tiny' });
  decode = await LLMEngine.create({ modelDir: dir, modelId: 'tiny' });
});
afterAll(async () => {
  await Promise.all([prefill?.close(), decode?.close(), runner?.release()]);
});

function prompt(seed: number, len: number): number[] {
  return [1, ...Array.from({ length: len - 1 }, (_, i) => 3 + ((seed * 7919 + i * 104729) % 31000))];
}

async function drain(it: AsyncIterable<GenerateOutput>): Promise<GenerateOutput[]> {
  const out: GenerateOutput[] = [];
  for await (const o of it) out.push(o);
  return out;
}

/** `inTransit`: hand over each block's CRC-32 as the transfer engine would, computed over the bytes as they arrived. */
async function handoff(tokens: number[], params: SamplingParams, corrupt = false, inTransit = false): Promise<number[]> {
  const fromBlock = decode.cachedPrefixBlocks(tokens);
  const pre = await drain(
    prefill.generate({ requestId: 'p', promptTokenIds: tokens, sampling: { ...params, maxTokens: 1 }, exportKv: { fromBlock } }),
  );
  const last = pre[pre.length - 1]!;
  const first = pre.find((o) => o.tokenIds.length > 0)!;
  const blocks = last.kv!.blocks.map((b) => b.slice());
  if (corrupt) blocks[blocks.length - 1]![100]! ^= 0xff;
  const prefilled: PrefilledKv = {
    fromBlock,
    blocks,
    checksums: inTransit ? blocks.map((b) => crc32(b) >>> 0) : undefined,
    firstToken: { tokenId: first.tokenIds[0]!, logprob: 0 },
    rngState: last.kv!.rngState,
    cachedTokens: first.cachedTokens,
  };
  const out = await drain(decode.generate({ requestId: 'd', promptTokenIds: tokens, sampling: params, prefilled }));
  return out.flatMap((o) => [...o.tokenIds]);
}

describe('PD handoff between two engines', () => {
  it('greedy: tokens equal the reference; the decode engine computes no prompt token', async () => {
    const params = samplingParams({ temperature: 0, maxTokens: 16, ignoreEos: true });
    const computed = decode.stats().prefillTokensComputed;
    for (const len of [5, 16, 37, 64]) {
      const tokens = prompt(len, len);
      const want = (await referenceGenerate(runner, tokens, params)).tokenIds;
      expect(await handoff(tokens, params), `len ${len}`).toEqual(want);
    }
    expect(decode.stats().usedBlocks).toBe(0);
    expect(decode.stats().prefillTokensComputed).toBe(computed);
  });

  it('seeded sampling continues exactly across the handoff', async () => {
    const params = samplingParams({ temperature: 1, seed: 7, maxTokens: 12, ignoreEos: true });
    const tokens = prompt(3, 40);
    const want = (await referenceGenerate(runner, tokens, params)).tokenIds;
    expect(await handoff(tokens, params)).toEqual(want);
  });

  it('only the blocks the decode side lacks are sent when it holds the prefix', async () => {
    const params = samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true });
    const shared = prompt(9, 48);
    await drain(decode.generate({ requestId: 'warm', promptTokenIds: [...shared, 7], sampling: params }));
    const tokens = [...shared, 11, 12, 13, 14, 15];
    expect(decode.cachedPrefixBlocks(tokens)).toBe(3);
    const want = (await referenceGenerate(runner, tokens, params)).tokenIds;
    expect(await handoff(tokens, params)).toEqual(want);
  });

  it('a corrupt block is never admitted: the decode side recomputes and the tokens are still right', async () => {
    const params = samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true });
    const tokens = prompt(21, 50);
    const want = (await referenceGenerate(runner, tokens, params)).tokenIds;
    const before = decode.stats().prefixCacheQueryTokens;
    expect(await handoff(tokens, params, true)).toEqual(want);
    expect(decode.stats().prefixCacheQueryTokens).toBeGreaterThan(before);
    expect(decode.stats().importFallbacks).toBe(1);
    expect(decode.stats().usedBlocks).toBe(0);
  });

  it('a prefill-role request yields its first token before the KV export, and an abort in between frees everything', async () => {
    const params = samplingParams({ temperature: 0, maxTokens: 1 });
    const tokens = prompt(31, 40);
    const outs = await drain(
      prefill.generate({ requestId: 'order', promptTokenIds: tokens, sampling: params, exportKv: { fromBlock: 0 } }),
    );
    expect(outs[0]!.tokenIds).toHaveLength(1);
    expect(outs[0]!.finishReason).toBeUndefined();
    expect(outs[0]!.kv).toBeUndefined();
    expect(outs.at(-1)).toMatchObject({ tokenIds: [], finishReason: 'length', kv: { fromBlock: 0 } });
    expect(outs.at(-1)!.kv!.blocks).toHaveLength(Math.ceil(tokens.length / 16));
    // A reader that stops at the first token (before the export ran) cancels the request; nothing leaks.
    const it = prefill.generate({ requestId: 'stop-early', promptTokenIds: prompt(32, 40), sampling: params, exportKv: { fromBlock: 0 } });
    for await (const o of it) if (o.tokenIds.length > 0) break;
    await new Promise((r) => setImmediate(r));
    expect(prefill.stats().usedBlocks).toBe(0);
  });

  it('with CRCs verified in transit: intact blocks import without a second pass, a corrupt one still falls back', async () => {
    const params = samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true });
    const tokens = prompt(23, 50);
    const want = (await referenceGenerate(runner, tokens, params)).tokenIds;
    const fallbacks = decode.stats().importFallbacks;
    const computed = decode.stats().prefillTokensComputed;
    expect(await handoff(tokens, params, false, true)).toEqual(want);
    expect(decode.stats().prefillTokensComputed).toBe(computed);
    // Corrupted before it was sent: its bytes match the CRC carried in transit, not their header's.
    expect(
      await handoff(
        tokens.map((t) => t + 1),
        params,
        true,
        true,
      ),
    ).toHaveLength(want.length);
    expect(decode.stats().importFallbacks).toBe(fallbacks + 1);
  });
});
