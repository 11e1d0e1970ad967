import { describe, expect, it } from 'vitest';
import type { GenerateOutput } from '@pdserve/contracts';
import { afterStreamedFirst } from './streamed-first';

function out(tokenIds: number[], finishReason?: GenerateOutput['finishReason']): GenerateOutput {
  return { tokenIds, logprobs: tokenIds.map((t) => ({ logprob: -t, top: [] })), finishReason, promptTokens: 7, cachedTokens: 3 };
}

async function collect(outputs: GenerateOutput[], streamed: number | undefined): Promise<GenerateOutput[]> {
  async function* engine(): AsyncGenerator<GenerateOutput> {
    yield* outputs;
  }
  const got: GenerateOutput[] = [];
  for await (const o of afterStreamedFirst(engine(), streamed)) got.push(o);
  return got;
}

describe('afterStreamedFirst', () => {
  it('passes every output through when no first token was streamed', async () => {
    const outputs = [out([5]), out([6, 7], 'length')];
    expect(await collect(outputs, undefined)).toEqual(outputs);
  });

  it('cuts the streamed token and its logprob from the first output that has tokens, keeping the rest', async () => {
    expect(await collect([out([]), out([5, 6]), out([5], 'stop')], 5)).toEqual([out([]), out([6]), out([5], 'stop')]);
  });

  it('leaves an empty output with the finish reason when the streamed token was the only one (max_tokens 1, EOS)', async () => {
    expect(await collect([out([5], 'length')], 5)).toEqual([out([], 'length')]);
  });

  it('fails when the engine recomputed a different first token', async () => {
    await expect(collect([out([9]), out([10])], 5)).rejects.toThrow(/first token 9 computed here differs from token 5/);
  });
});
