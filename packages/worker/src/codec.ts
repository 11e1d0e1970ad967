// Engine values <-> wire messages, in one place.
import { randomBytes } from 'node:crypto';
import {
  EngineError,
  SERVICE_TIERS,
  type FinishReason,
  type GenerateOutput,
  type PromptLogprob,
  type ServiceTier,
} from '@pdserve/contracts';
import { samplingParams, samplingProblem, type SampledToken, type SamplingParams, type StructuredOutput } from '@pdserve/model/sampling';
import type { GenerateChunkMsg, PrefillFirstMsg, PromptLogprobMsg, SamplingParamsMsg, StructuredOutputMsg } from './wire';

export function samplingToWire(p: SamplingParams): SamplingParamsMsg {
  return {
    temperature: p.temperature,
    top_p: p.topP,
    top_k: p.topK,
    min_p: p.minP,
    repetition_penalty: p.repetitionPenalty,
    presence_penalty: p.presencePenalty,
    frequency_penalty: p.frequencyPenalty,
    has_seed: p.seed !== undefined,
    seed: p.seed ?? 0,
    max_tokens: p.maxTokens,
    stop_token_ids: [...p.stopTokenIds],
    ignore_eos: p.ignoreEos,
    has_logprobs: p.logprobs !== undefined,
    logprobs: p.logprobs ?? 0,
    logit_bias: Object.fromEntries(Object.entries(p.logitBias ?? {})),
    min_tokens: p.minTokens ?? 0,
    structured_output: p.structuredOutput === undefined ? null : structuredToWire(p.structuredOutput),
    has_prompt_logprobs: p.promptLogprobs !== undefined,
    prompt_logprobs: p.promptLogprobs ?? 0,
  };
}

function promptLogprobsToWire(l: readonly PromptLogprob[] | undefined): PromptLogprobMsg[] {
  return (l ?? []).map((e) => ({
    token_id: e.tokenId,
    logprob: e.logprob,
    rank: e.rank,
    top: e.top.map((t) => ({ token_id: t.tokenId, logprob: t.logprob })),
  }));
}

/** Only the first chunk carries them (a one-token prompt has none: the API reads absent as none). */
function promptLogprobsFromWire(m: readonly PromptLogprobMsg[] | undefined): { promptLogprobs?: PromptLogprob[] } {
  if (m === undefined || m.length === 0) return {};
  return {
    promptLogprobs: m.map((e) => ({
      tokenId: e.token_id,
      logprob: e.logprob,
      rank: e.rank,
      top: e.top.map((t) => ({ tokenId: t.token_id, logprob: t.logprob })),
    })),
  };
}

function structuredToWire(s: StructuredOutput): StructuredOutputMsg {
  if (s.kind === 'json_object') return { kind: s.kind, schema_json: '', has_strict: false, strict: false };
  return { kind: s.kind, schema_json: JSON.stringify(s.schema), has_strict: s.strict !== undefined, strict: s.strict ?? false };
}

function structuredFromWire(m: StructuredOutputMsg): StructuredOutput {
  if (m.kind === 'json_object') return { kind: 'json_object' };
  if (m.kind !== 'json_schema')
    throw new EngineError(
      'invalid_request',
      `Invalid structured output kind ${JSON.stringify(m.kind)}; expected json_object or json_schema.`,
      'response_format',
    );
  let schema: unknown;
  try {
    schema = JSON.parse(m.schema_json);
  } catch {
    throw new EngineError('invalid_request', 'The structured output schema is not valid JSON.', 'response_format');
  }
  return m.has_strict ? { kind: 'json_schema', schema, strict: m.strict } : { kind: 'json_schema', schema };
}

/** The sampling of a prefill-only request: its one token, under the same constraints (min_tokens capped at it). */
export function prefillSampling(p: SamplingParams): SamplingParams {
  return { ...p, maxTokens: 1, minTokens: p.minTokens === undefined ? undefined : Math.min(p.minTokens, 1) };
}

/**
 * Stop strings stay at the gateway, which detokenizes; workers stop on token ids. Whatever arrives is
 * checked as the HTTP API checks it (one validator): a bad value is an 'invalid_request' (INVALID_ARGUMENT)
 * before any work or block is spent on it.
 */
export function samplingFromWire(m: SamplingParamsMsg | null): SamplingParams {
  if (!m) throw new EngineError('invalid_request', 'sampling params missing', 'sampling');
  const p = samplingParams({
    temperature: m.temperature,
    topP: m.top_p,
    topK: m.top_k,
    minP: m.min_p,
    repetitionPenalty: m.repetition_penalty,
    presencePenalty: m.presence_penalty,
    frequencyPenalty: m.frequency_penalty,
    seed: m.has_seed ? m.seed : undefined,
    maxTokens: m.max_tokens,
    stopTokenIds: m.stop_token_ids,
    ignoreEos: m.ignore_eos,
    logprobs: m.has_logprobs ? m.logprobs : undefined,
    logitBias: m.logit_bias === undefined || Object.keys(m.logit_bias).length === 0 ? undefined : logitBiasFromWire(m.logit_bias),
    minTokens: m.min_tokens ? m.min_tokens : undefined,
    structuredOutput: m.structured_output ? structuredFromWire(m.structured_output) : undefined,
    promptLogprobs: m.has_prompt_logprobs ? m.prompt_logprobs : undefined,
  });
  const problem = samplingProblem(p);
  if (problem !== undefined) throw new EngineError('invalid_request', problem.message, problem.param);
  return p;
}

function logitBiasFromWire(m: Readonly<Record<string, number>>): Record<number, number> {
  const out: Record<number, number> = {};
  for (const [k, v] of Object.entries(m)) out[Number(k)] = v;
  return out;
}

export function outputToWire(o: GenerateOutput, prefilledBy: string): GenerateChunkMsg {
  return {
    token_ids: [...o.tokenIds],
    logprobs: (o.logprobs ?? []).map((l) => ({ logprob: l.logprob, top: l.top.map((t) => ({ token_id: t.tokenId, logprob: t.logprob })) })),
    finish_reason: o.finishReason ?? '',
    prompt_tokens: o.promptTokens,
    cached_tokens: o.cachedTokens,
    prefilled_by: prefilledBy,
    prompt_logprobs: promptLogprobsToWire(o.promptLogprobs),
  };
}

export function outputFromWire(m: GenerateChunkMsg, wantLogprobs: boolean): GenerateOutput {
  return {
    tokenIds: m.token_ids,
    logprobs: wantLogprobs
      ? m.logprobs.map((l) => ({ logprob: l.logprob, top: l.top.map((t) => ({ tokenId: t.token_id, logprob: t.logprob })) }))
      : undefined,
    finishReason: m.finish_reason === '' ? undefined : (m.finish_reason as FinishReason),
    promptTokens: m.prompt_tokens,
    cachedTokens: m.cached_tokens,
    ...promptLogprobsFromWire(m.prompt_logprobs),
  };
}

/** The prefill worker's first output (its only token), as the early `first` event of Prefill. */
export function firstToWire(o: GenerateOutput): PrefillFirstMsg {
  const lp = o.logprobs?.[0];
  return {
    first_token: o.tokenIds[0]!,
    first_logprob: lp?.logprob ?? 0,
    first_top: (lp?.top ?? []).map((t) => ({ token_id: t.tokenId, logprob: t.logprob })),
    cached_tokens: o.cachedTokens,
    prompt_tokens: o.promptTokens,
    prompt_logprobs: promptLogprobsToWire(o.promptLogprobs),
  };
}

/** The token the prefill worker sampled, as the engine imports it with the KV. */
export function sampledFromWire(m: PrefillFirstMsg): SampledToken {
  return {
    tokenId: m.first_token,
    logprob: m.first_logprob,
    topLogprobs: m.first_top.map((t) => ({ tokenId: t.token_id, logprob: t.logprob })),
  };
}

/**
 * The first output of a disaggregated request, built from the prefill worker's `first` event: what the
 * decode worker's engine will emit for that token once the KV is imported. `cachedTokens`: the count to report.
 */
export function firstFromWire(m: PrefillFirstMsg, wantLogprobs: boolean, cachedTokens: number): GenerateOutput {
  const t = sampledFromWire(m);
  return {
    tokenIds: [t.tokenId],
    logprobs: wantLogprobs ? [{ logprob: t.logprob, top: t.topLogprobs ?? [] }] : undefined,
    promptTokens: m.prompt_tokens,
    cachedTokens,
    ...promptLogprobsFromWire(m.prompt_logprobs),
  };
}

/**
 * Sampling that samples the same tokens wherever it is recomputed: greedy or seeded as is, else seeded
 * here (randomly, so its output stays as random). A disaggregated request's first token is streamed before
 * its KV arrives; should the handoff fail, the decode worker prefills locally and must sample that token again.
 */
export function seededSampling(s: SamplingParamsMsg): SamplingParamsMsg {
  return s.has_seed || s.temperature <= 0 ? s : { ...s, has_seed: true, seed: randomBytes(6).readUIntLE(0, 6) };
}

/** A request's service tier as sent ('' or unknown: default). */
export function serviceTierFromWire(s: string | undefined): ServiceTier {
  return (SERVICE_TIERS as readonly string[]).includes(s ?? '') ? (s as ServiceTier) : 'default';
}
