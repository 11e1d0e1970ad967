import { describe, expect, it } from 'vitest';
import { boundsProblem, SAMPLING_BOUNDS, samplingProblem } from './sampling-check';
import { samplingParams } from './sampling';

describe('the shared sampling validator', () => {
  it('states the bound that was missed, NaN and infinities included', () => {
    expect(boundsProblem('temperature', 2, SAMPLING_BOUNDS.temperature)).toBeUndefined();
    expect(boundsProblem('temperature', 2.5, SAMPLING_BOUNDS.temperature)).toBe(
      "Invalid value for 'temperature': must be at least 0 and at most 2, got 2.5.",
    );
    expect(boundsProblem('top_p', 0, SAMPLING_BOUNDS.top_p)).toMatch(/greater than 0 and at most 1, got 0/);
    expect(boundsProblem('top_k', Number.NaN, SAMPLING_BOUNDS.top_k)).toMatch(/integer/);
    expect(boundsProblem('min_p', Number.NaN, SAMPLING_BOUNDS.min_p)).toMatch(/got NaN/);
    expect(boundsProblem('top_k', Infinity, SAMPLING_BOUNDS.top_k)).toMatch(/integer/);
    expect(boundsProblem('x', Infinity, { min: 0 })).toMatch(/at least 0 and finite, got Infinity/);
    expect(boundsProblem('x', -Infinity, {})).toMatch(/finite/);
  });

  it('checks a whole SamplingParams, token ids against the vocabulary when it is known', () => {
    expect(samplingProblem(samplingParams({ temperature: 0, stopTokenIds: [5] }), 10)).toBeUndefined();
    expect(samplingProblem(samplingParams({ stopTokenIds: [10] }), 10)).toMatchObject({ param: 'stop_token_ids' });
    expect(samplingProblem(samplingParams({ stopTokenIds: [10] }))).toBeUndefined();
    expect(samplingProblem(samplingParams({ stopTokenIds: [-1] }))).toMatchObject({ param: 'stop_token_ids' });
    expect(samplingProblem(samplingParams({ stop: ['x'.repeat(2000)] }))).toMatchObject({ param: 'stop' });
    expect(samplingProblem(samplingParams({ logprobs: 21 }))).toMatchObject({ param: 'logprobs' });
    expect(samplingProblem(samplingParams({ maxTokens: 0 }))).toMatchObject({ param: 'max_tokens' });
  });

  it('covers logit_bias, min_tokens and structured output', () => {
    expect(samplingProblem(samplingParams({ logitBias: { 3: 100, 4: -100 }, minTokens: 2, maxTokens: 2 }), 10)).toBeUndefined();
    expect(samplingProblem(samplingParams({ logitBias: { 10: 1 } }), 10)).toMatchObject({ param: 'logit_bias' });
    expect(samplingProblem(samplingParams({ logitBias: { 3: 101 } }))).toMatchObject({
      param: 'logit_bias',
      message: expect.stringMatching(/at most 100/),
    });
    expect(samplingProblem(samplingParams({ logitBias: { 3: Number.NaN } }))).toMatchObject({ param: 'logit_bias' });
    expect(samplingProblem(samplingParams({ logitBias: { ['-1' as unknown as number]: 1 } }))).toMatchObject({ param: 'logit_bias' });
    const many = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [i, 1]));
    expect(samplingProblem(samplingParams({ logitBias: many }))).toMatchObject({ param: 'logit_bias' });
    expect(samplingProblem(samplingParams({ minTokens: -1 }))).toMatchObject({ param: 'min_tokens' });
    expect(samplingProblem(samplingParams({ minTokens: 5, maxTokens: 4 }))).toMatchObject({ param: 'min_tokens' });
    expect(samplingProblem(samplingParams({ structuredOutput: { kind: 'json_object' } }))).toBeUndefined();
    expect(samplingProblem(samplingParams({ structuredOutput: { kind: 'regex' } as never }))).toMatchObject({ param: 'response_format' });
  });
});
