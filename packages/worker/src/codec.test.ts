// Sampling values from the wire are checked as the HTTP API checks them (the shared validator), with the
// OpenAI field name in the error, before any work is done.
import { describe, expect, it } from 'vitest';
import { EngineError } from '@pdserve/contracts';
import { samplingParams } from '@pdserve/model';
import { prefillSampling, samplingFromWire, samplingToWire } from './codec';
import type { SamplingParamsMsg } from './wire';

const good = (): SamplingParamsMsg =>
  samplingToWire(samplingParams({ temperature: 0.7, topP: 0.9, topK: 5, seed: 3, maxTokens: 8, stopTokenIds: [2], logprobs: 2 }));

function refusal(m: SamplingParamsMsg | null): EngineError {
  try {
    samplingFromWire(m);
  } catch (e) {
    expect(e).toBeInstanceOf(EngineError);
    return e as EngineError;
  }
  throw new Error('accepted');
}

describe('samplingFromWire', () => {
  it('round-trips good values', () => {
    expect(samplingFromWire(good())).toMatchObject({
      temperature: 0.7,
      topP: 0.9,
      topK: 5,
      seed: 3,
      maxTokens: 8,
      stopTokenIds: [2],
      logprobs: 2,
    });
  });

  it('round-trips logit_bias, min_tokens and structured output; a prefill keeps them for its one token', () => {
    const schema = { type: 'object', properties: { a: { type: 'integer' } } };
    const p = samplingParams({
      maxTokens: 8,
      logitBias: { 5: -3, 7: 2.5 },
      minTokens: 4,
      structuredOutput: { kind: 'json_schema', schema, strict: false },
    });
    const back = samplingFromWire(samplingToWire(p));
    expect(back).toMatchObject({
      logitBias: { 5: -3, 7: 2.5 },
      minTokens: 4,
      structuredOutput: { kind: 'json_schema', schema, strict: false },
    });
    expect(samplingFromWire(samplingToWire(samplingParams({ structuredOutput: { kind: 'json_object' } }))).structuredOutput).toEqual({
      kind: 'json_object',
    });
    expect(samplingFromWire(samplingToWire(samplingParams({}))).structuredOutput).toBeUndefined();
    expect(prefillSampling(back)).toMatchObject({ maxTokens: 1, minTokens: 1, structuredOutput: { kind: 'json_schema' } });
  });

  it.each([
    ['logit_bias', { logit_bias: { '5': 500 } }, /at most 100/],
    [
      'response_format',
      { structured_output: { kind: 'regex', schema_json: '', has_strict: false, strict: false } },
      /json_object or json_schema/,
    ],
    ['temperature', { temperature: Number.NaN }, /'temperature'.*got NaN/],
    ['temperature', { temperature: 1e9 }, /at most 2/],
    ['top_p', { top_p: 0 }, /greater than 0/],
    ['top_p', { top_p: Infinity }, /at most 1/],
    ['top_k', { top_k: -7 }, /at least -1/],
    ['min_p', { min_p: -0.5 }, /at least 0/],
    ['repetition_penalty', { repetition_penalty: 0 }, /greater than 0/],
    ['presence_penalty', { presence_penalty: -Infinity }, /at least -2/],
    ['frequency_penalty', { frequency_penalty: 3 }, /at most 2/],
    ['max_tokens', { max_tokens: 0 }, /at least 1/],
    ['logprobs', { has_logprobs: true, logprobs: 100_000 }, /at most 20/],
    ['seed', { has_seed: true, seed: 2 ** 60 }, /integer/],
    ['stop_token_ids', { stop_token_ids: Array.from({ length: 1000 }, (_, i) => i) }, /at most 256/],
  ] as const)('refuses a bad %s as invalid_request naming it', (param, patch, message) => {
    const e = refusal({ ...good(), ...patch });
    expect({ code: e.code, param: e.param }).toEqual({ code: 'invalid_request', param });
    expect(e.message).toMatch(message);
  });

  it('refuses missing sampling params', () => {
    expect(refusal(null).code).toBe('invalid_request');
  });

  it('ignores a logprobs or seed value that is not switched on', () => {
    expect(samplingFromWire({ ...good(), has_logprobs: false, logprobs: 1e6, has_seed: false, seed: Number.NaN })).toMatchObject({
      logprobs: undefined,
      seed: undefined,
    });
  });
});
