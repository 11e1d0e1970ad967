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

/**
 * A streamed handoff: `streaming` prefills `tokens`, each chunk's full blocks going into the decode engine's
 * prefix cache as they are handed over (cacheBlocks); the decode engine then generates from its cached
 * prefix and the blocks the prefill exported last. The parts as handed over, the blocks each one cached,
 * that last export, the decode engine's cached prefix (blocks) when it started, and the tokens it generated.
 */
async function streamedHandoff(streaming: LLMEngine, tokens: number[], params: SamplingParams) {
  const parts: { fromBlock: number; blocks: number }[] = [];
  const cached: Promise<number>[] = [];
  const pre = await drain(
    streaming.generate({
      requestId: 'streamed',
      promptTokenIds: tokens,
      sampling: { ...params, maxTokens: 1 },
      exportKv: {
        fromBlock: 0,
        onBlocks: (p) => {
          parts.push({ fromBlock: p.fromBlock, blocks: p.blocks.length });
          cached.push(decode.cacheBlocks(tokens, '', { fromBlock: p.fromBlock, blocks: p.blocks.map((b) => b.slice()) }));
        },
      },
    }),
  );
  const cachedBlocks = await Promise.all(cached);
  const last = pre.at(-1)!.kv!;
  const first = pre.find((o) => o.tokenIds.length > 0)!;
  const own = decode.cachedPrefixBlocks(tokens);
  const out = await drain(
    decode.generate({
      requestId: 'streamed-d',
      promptTokenIds: tokens,
      sampling: params,
      prefilled: {
        fromBlock: own,
        blocks: last.blocks,
        firstToken: { tokenId: first.tokenIds[0]!, logprob: 0 },
        rngState: last.rngState,
        cachedTokens: 0,
      },
    }),
  );
  return { parts, cachedBlocks, last, own, tokens: out.flatMap((o) => [...o.tokenIds]) };
}

/**
 * A handoff that leaves the prompt's last block to the decode engine: `from` computes every block below it and
 * samples nothing; each part it exports, and its last export, go into the decode engine's prefix cache.
 */
async function leaveTail(from: LLMEngine, tokens: number[], params: SamplingParams, requestId: string) {
  const computeTo = Math.floor((tokens.length - 1) / 16) * 16;
  const parts: number[][] = [];
  const exported: Uint8Array[] = [];
  const cached: Promise<number>[] = [];
  const take = (p: { fromBlock: number; blocks: readonly Uint8Array[] }): void => {
    parts.push([p.fromBlock, p.blocks.length]);
    exported.push(...p.blocks.map((b) => b.slice()));
    cached.push(decode.cacheBlocks(tokens, '', { fromBlock: p.fromBlock, blocks: p.blocks.map((b) => b.slice()) }));
  };
  const pre = await drain(
    from.generate({
      requestId,
      promptTokenIds: tokens.slice(0, computeTo),
      sampling: { ...params, maxTokens: 1 },
      exportKv: { fromBlock: 0, withoutToken: true, onBlocks: take },
    }),
  );
  take(pre.at(-1)!.kv!); // the last transfer: the blocks not handed over yet
  return { computeTo, pre, parts, exported, cachedBlocks: await Promise.all(cached) };
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

  it('an imported sequence decodes in the step that imports it: n tokens after a handoff take n − 1 steps', async () => {
    // 32 tokens fill their last block (the first decode's slot is a block of its own); 37 do not.
    for (const [len, maxTokens] of [
      [32, 5],
      [37, 5],
      [32, 1],
    ] as const) {
      const params = samplingParams({ temperature: 0, maxTokens, ignoreEos: true });
      const tokens = prompt(len + 100, len);
      const want = (await referenceGenerate(runner, tokens, params)).tokenIds;
      const steps = decode.stats().steps;
      expect(await handoff(tokens, params), `len ${len}`).toEqual(want);
      expect(decode.stats().steps - steps, `len ${len}, ${maxTokens} tokens`).toBe(Math.max(1, maxTokens - 1));
      expect(decode.stats().usedBlocks).toBe(0);
    }
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

  it('streamed: each chunk hands over its full blocks; the decode engine caches them as they come and imports only the rest', async () => {
    const chunk = 32;
    const streamingPrefill = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', prefillChunkTokens: chunk });
    try {
      for (const [len, params] of [
        [100, samplingParams({ temperature: 0, maxTokens: 8, ignoreEos: true })],
        [96, samplingParams({ temperature: 0.8, seed: 4, maxTokens: 8, ignoreEos: true })],
      ] as const) {
        const tokens = prompt(len + 40, len);
        const want = (await referenceGenerate(runner, tokens, params)).tokenIds;
        const before = decode.stats();
        const { parts, cachedBlocks, last, own, tokens: got } = await streamedHandoff(streamingPrefill, tokens, params);
        // Every chunk short of the prompt's end: its two full blocks, in order, none twice.
        const chunks = Math.ceil(len / chunk) - 1;
        expect(parts).toEqual(Array.from({ length: chunks }, (_, k) => ({ fromBlock: 2 * k, blocks: 2 })));
        expect(cachedBlocks).toEqual(parts.map(() => 2));
        expect(last.fromBlock).toBe(2 * chunks);
        expect(last.fromBlock + last.blocks.length).toBe(Math.ceil(len / 16));
        expect(own).toBe(2 * chunks);
        expect(got).toEqual(want);
        const after = decode.stats();
        expect(after.prefillTokensComputed).toBe(before.prefillTokensComputed);
        expect(after.streamedTokens - before.streamedTokens).toBe(2 * chunks * 16);
        expect(after.usedBlocks).toBe(0);
        expect(streamingPrefill.stats().usedBlocks).toBe(0);
      }
    } finally {
      await streamingPrefill.close();
    }
  });

  it('streamed: the final chunk is split, so that only the block holding the last prompt token is left after the first token; the first decode step copies in only that block', async () => {
    const chunk = 128;
    const streamingPrefill = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', prefillChunkTokens: chunk });
    try {
      // [0, 128) then [128, 192) and [192, len): a partial last block, a full one, and a prompt of one chunk.
      for (const [len, params, want] of [
        [
          200,
          samplingParams({ temperature: 0, maxTokens: 6, ignoreEos: true }),
          [
            [0, 8],
            [8, 4],
          ],
        ],
        [
          208,
          samplingParams({ temperature: 0.8, seed: 9, maxTokens: 6, ignoreEos: true }),
          [
            [0, 8],
            [8, 4],
          ],
        ],
        [100, samplingParams({ temperature: 0, maxTokens: 6, ignoreEos: true }), [[0, 6]]],
      ] as const) {
        const tokens = prompt(len + 3, len);
        const steps = streamingPrefill.stats().steps;
        const gathered = decode.stats().decodeGatheredTokens;
        const { parts, last, tokens: got } = await streamedHandoff(streamingPrefill, tokens, params);
        expect(parts.map((p) => [p.fromBlock, p.blocks])).toEqual(want);
        expect(streamingPrefill.stats().steps - steps).toBe(want.length + 1);
        expect(last.fromBlock).toBe(Math.ceil(len / 16) - 1);
        expect(last.blocks).toHaveLength(1);
        expect(got).toEqual((await referenceGenerate(runner, tokens, params)).tokenIds);
        // The streamed blocks were staged as the row as they came: the first decode copied the last block's tokens only.
        expect(decode.stats().decodeGatheredTokens - gathered).toBe(len - last.fromBlock * 16);
        expect(decode.stats().usedBlocks).toBe(0);
      }
    } finally {
      await streamingPrefill.close();
    }
  });

  it("the decode engine computes the prompt's last block itself: the prefill samples nothing and sends every block before it; the rest runs on the staged row, which stays resident", async () => {
    const chunk = 64;
    const streamingPrefill = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', prefillChunkTokens: chunk });
    try {
      // A partial last block, a full one, a prompt of one block and a bit (nothing staged before the tail), and one chunk.
      for (const [len, params] of [
        [150, samplingParams({ temperature: 0, maxTokens: 6, ignoreEos: true })],
        [160, samplingParams({ temperature: 0.8, seed: 3, maxTokens: 6, ignoreEos: true })],
        [17, samplingParams({ temperature: 0, maxTokens: 4, ignoreEos: true })],
        [70, samplingParams({ temperature: 0.8, seed: 8, maxTokens: 4, ignoreEos: true })],
      ] as const) {
        const tokens = prompt(len + 5, len);
        const before = { prefill: streamingPrefill.stats(), decode: decode.stats() };
        const { computeTo, pre, parts, exported, cachedBlocks } = await leaveTail(streamingPrefill, tokens, params, 'tail');
        expect(pre.flatMap((o) => [...o.tokenIds])).toEqual([]); // nothing sampled
        expect(pre.at(-1)!.finishReason).toBe('length');
        // Chunks of 64 tokens, not split at the end: every block below the last prompt token's, each once (the last
        // transfer's too).
        const chunks = Math.ceil(computeTo / chunk);
        expect(streamingPrefill.stats().steps - before.prefill.steps).toBe(chunks);
        expect(parts).toEqual(Array.from({ length: chunks }, (_, k) => [4 * k, Math.min(4, computeTo / 16 - 4 * k)]));
        expect(cachedBlocks).toEqual(parts.map((p) => p[1]));
        const out = await drain(decode.generate({ requestId: 'tail-d', promptTokenIds: tokens, sampling: params }));
        expect(out.flatMap((o) => [...o.tokenIds])).toEqual((await referenceGenerate(runner, tokens, params)).tokenIds);
        const after = decode.stats();
        expect(after.prefillTokensComputed - before.decode.prefillTokensComputed).toBe(len - computeTo);
        expect(after.streamedTokens - before.decode.streamedTokens).toBe(computeTo);
        // Nothing copied from the blocks into a decode row: the tail joined the staged row, and decoding went on in it.
        expect(after.decodeGatheredTokens - before.decode.decodeGatheredTokens).toBe(0);
        expect(after.usedBlocks).toBe(0);
        expect(streamingPrefill.stats().usedBlocks).toBe(0);
        // Again: the whole prompt is cached on the prefill engine (nothing is sampled, so its last block needs
        // no computing either): nothing computed, every block exported at once.
        const computed = streamingPrefill.stats().prefillTokensComputed;
        const again = await drain(
          streamingPrefill.generate({
            requestId: 'tail-again',
            promptTokenIds: tokens.slice(0, computeTo),
            sampling: { ...params, maxTokens: 1 },
            exportKv: { fromBlock: 0, withoutToken: true, onBlocks: () => expect.unreachable() },
          }),
        );
        expect(streamingPrefill.stats().prefillTokensComputed).toBe(computed);
        expect(again.at(-1)!.cachedTokens).toBe(computeTo);
        expect(again.at(-1)!.kv!.fromBlock).toBe(0);
        expect(again.at(-1)!.kv!.blocks).toEqual(exported); // the same bytes as computed the first time
        expect(streamingPrefill.stats().usedBlocks).toBe(0);
      }
    } finally {
      await streamingPrefill.close();
    }
  });

  it('the tail computed on the decode engine gives the tokens of a local prefill under the most fragile seeded sampling (temperature 1, top-p 0.9)', async () => {
    // The tail's logits come from a decode row on the staged row (its past as wide as the staged arena), a local
    // prompt's from a prefill (its past exactly as wide as itself): a draw near a boundary would show a difference.
    const local = await LLMEngine.create({ modelDir: dir, modelId: 'tiny' });
    try {
      for (let c = 0; c < 12; c++) {
        const len = 300 + ((c * 37) % 250);
        const tokens = prompt(5000 + c, len);
        const params = samplingParams({ temperature: 1, topP: 0.9, seed: 77 + c, maxTokens: 16, ignoreEos: true });
        const want = (await drain(local.generate({ requestId: `local-${c}`, promptTokenIds: tokens, sampling: params }))).flatMap((o) => [
          ...o.tokenIds,
        ]);
        await leaveTail(prefill, tokens, params, `tail-p-${c}`);
        const got = await drain(decode.generate({ requestId: `tail-d-${c}`, promptTokenIds: tokens, sampling: params }));
        expect(
          got.flatMap((o) => [...o.tokenIds]),
          `prompt ${c}`,
        ).toEqual(want);
      }
      expect(decode.stats().usedBlocks).toBe(0);
    } finally {
      await local.close();
    }
  });

  it('streamed blocks that are corrupt or of another prompt are refused, never cached', async () => {
    const tokens = prompt(77, 40);
    const pre = await drain(
      prefill.generate({
        requestId: 'src',
        promptTokenIds: tokens,
        sampling: samplingParams({ temperature: 0, maxTokens: 1 }),
        exportKv: { fromBlock: 0 },
      }),
    );
    const blocks = pre.at(-1)!.kv!.blocks.map((b) => b.slice(0, b.length));
    const other = tokens.map((t) => t + 1);
    expect(await decode.cacheBlocks(other, '', { fromBlock: 0, blocks: blocks.slice(0, 2) })).toBe(0);
    expect(decode.cachedPrefixBlocks(other)).toBe(0);
    const bad = blocks.map((b) => b.slice());
    bad[0]![200]! ^= 0xff;
    expect(await decode.cacheBlocks(tokens, '', { fromBlock: 0, blocks: bad.slice(0, 2) })).toBe(0);
    expect(await decode.cacheBlocks(tokens, 'salted', { fromBlock: 0, blocks: blocks.slice(0, 2) })).toBe(0);
    expect(decode.cachedPrefixBlocks(tokens)).toBe(0);
    // The same blocks, intact and of this prompt, go in.
    expect(await decode.cacheBlocks(tokens, '', { fromBlock: 0, blocks: blocks.slice(0, 2) })).toBe(2);
    expect(decode.cachedPrefixBlocks(tokens)).toBe(2);
  });
});
