// The one validator of sampling values, wherever they enter a process: the HTTP API checks each JSON field
// against these bounds (with its own type checks around them), a worker checks what arrives over gRPC, and
// the engine checks again at admission with the vocabulary in hand. Messages use the OpenAI field names.
import type { SamplingParams } from './sampling';

/** Allowed values of one numeric field. */
export interface Bounds {
  readonly min?: number;
  readonly max?: number;
  /** The minimum itself is not allowed. */
  readonly minExclusive?: boolean;
  /** Only (safe) integers. */
  readonly integer?: boolean;
}

/** Most top alternatives per token for logprobs (vLLM's default max_logprobs); each costs a pass over the vocabulary. */
export const MAX_LOGPROBS = 20;
/** Most stop strings; OpenAI allows 4, vLLM any number; matching cost grows with the count. */
export const MAX_STOP_STRINGS = 16;
/** Longest stop string, in UTF-16 code units; the stop matcher holds back up to this much text. */
export const MAX_STOP_LENGTH = 1024;
/** Most stop token ids. */
export const MAX_STOP_TOKEN_IDS = 256;
/** Most logit_bias entries; each costs an add per sampled token. */
export const MAX_LOGIT_BIAS = 1024;

/** Bounds of every numeric sampling field, by its OpenAI name. */
export const SAMPLING_BOUNDS = {
  temperature: { min: 0, max: 2 },
  top_p: { min: 0, minExclusive: true, max: 1 },
  /** -1 and 0 both mean off. */
  top_k: { min: -1, integer: true },
  min_p: { min: 0, max: 1 },
  presence_penalty: { min: -2, max: 2 },
  frequency_penalty: { min: -2, max: 2 },
  repetition_penalty: { min: 0, minExclusive: true, max: 10 },
  seed: { min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, integer: true },
  max_tokens: { min: 1, integer: true },
  logprobs: { min: 0, max: MAX_LOGPROBS, integer: true },
  min_tokens: { min: 0, integer: true },
  prompt_logprobs: { min: 0, max: MAX_LOGPROBS, integer: true },
  /** OpenAI's range for a logit_bias value. */
  logit_bias: { min: -100, max: 100 },
} as const satisfies Readonly<Record<string, Bounds>>;

/** What is wrong with `v` as the value of `param`, in a sentence for the client; undefined if nothing. */
export function boundsProblem(param: string, v: number, b: Bounds): string | undefined {
  if (b.integer && !Number.isSafeInteger(v)) return `Invalid value for '${param}': expected an integer, got ${v}.`;
  // Written so that NaN fails every comparison.
  const low = b.min === undefined ? v > -Infinity : b.minExclusive ? v > b.min : v >= b.min;
  const high = b.max === undefined ? v < Infinity : v <= b.max;
  if (low && high) return undefined;
  const lo = b.min === undefined ? '' : `${b.minExclusive ? 'greater than' : 'at least'} ${b.min}`;
  const hi = b.max === undefined ? 'finite' : `at most ${b.max}`;
  const want = [lo, hi].filter((s) => s !== '').join(' and ');
  return `Invalid value for '${param}': must be ${want}, got ${v}.`;
}

/** A sampling value that must be refused: which field (OpenAI name) and why. */
export interface SamplingProblem {
  readonly param: string;
  readonly message: string;
}

/**
 * The first problem of a whole SamplingParams (as it arrives from another process), or undefined.
 * `vocabSize`, when known, also bounds the token ids it names.
 */
export function samplingProblem(p: SamplingParams, vocabSize?: number): SamplingProblem | undefined {
  const numbers: readonly [keyof typeof SAMPLING_BOUNDS, number | undefined][] = [
    ['temperature', p.temperature],
    ['top_p', p.topP],
    ['top_k', p.topK],
    ['min_p', p.minP],
    ['presence_penalty', p.presencePenalty],
    ['frequency_penalty', p.frequencyPenalty],
    ['repetition_penalty', p.repetitionPenalty],
    ['seed', p.seed],
    ['max_tokens', p.maxTokens],
    ['logprobs', p.logprobs],
    ['min_tokens', p.minTokens],
    ['prompt_logprobs', p.promptLogprobs],
  ];
  for (const [param, v] of numbers) {
    if (v === undefined) continue;
    const message = boundsProblem(param, v, SAMPLING_BOUNDS[param]);
    if (message !== undefined) return { param, message };
  }
  if (p.minTokens !== undefined && p.minTokens > p.maxTokens) {
    return { param: 'min_tokens', message: `'min_tokens' (${p.minTokens}) must not exceed 'max_tokens' (${p.maxTokens}).` };
  }
  return (
    stopProblem(p.stop) ??
    stopTokenIdsProblem(p.stopTokenIds, vocabSize) ??
    logitBiasProblem(p.logitBias, vocabSize) ??
    structuredOutputProblem(p)
  );
}

/** Too many entries, a key that is no token id (of this vocabulary, when known), or a value out of range. */
export function logitBiasProblem(bias: Readonly<Record<number, number>> | undefined, vocabSize?: number): SamplingProblem | undefined {
  if (bias === undefined) return undefined;
  const entries = Object.entries(bias);
  if (entries.length > MAX_LOGIT_BIAS)
    return { param: 'logit_bias', message: `'logit_bias' may hold at most ${MAX_LOGIT_BIAS} entries, got ${entries.length}.` };
  for (const [key, value] of entries) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || !Number.isSafeInteger(id) || (vocabSize !== undefined && id >= vocabSize)) {
      const rule = vocabSize === undefined ? 'keys are token ids' : `keys are token ids below the vocabulary size ${vocabSize}`;
      return { param: 'logit_bias', message: `Invalid key in 'logit_bias': ${rule}, got ${JSON.stringify(key)}.` };
    }
    const message =
      typeof value === 'number'
        ? boundsProblem(`logit_bias.${key}`, value, SAMPLING_BOUNDS.logit_bias)
        : `Invalid value for 'logit_bias.${key}': expected a number.`;
    if (message !== undefined) return { param: 'logit_bias', message };
  }
  return undefined;
}

function structuredOutputProblem(p: SamplingParams): SamplingProblem | undefined {
  const s = p.structuredOutput as { readonly kind?: unknown } | undefined;
  if (s === undefined || s.kind === 'json_object' || s.kind === 'json_schema') return undefined;
  return {
    param: 'response_format',
    message: `Invalid structured output kind ${JSON.stringify(s.kind)}; expected json_object or json_schema.`,
  };
}

/** Too many stop strings, or one too long. */
export function stopProblem(stop: readonly string[]): SamplingProblem | undefined {
  if (stop.length > MAX_STOP_STRINGS)
    return { param: 'stop', message: `'stop' may hold at most ${MAX_STOP_STRINGS} strings, got ${stop.length}.` };
  const long = stop.findIndex((s) => s.length > MAX_STOP_LENGTH);
  return long === -1 ? undefined : { param: 'stop', message: `'stop[${long}]' is longer than ${MAX_STOP_LENGTH} characters.` };
}

/** Too many stop token ids, or one that is no token id (of this vocabulary, when `vocabSize` is given). */
export function stopTokenIdsProblem(ids: readonly number[], vocabSize?: number): SamplingProblem | undefined {
  if (ids.length > MAX_STOP_TOKEN_IDS)
    return { param: 'stop_token_ids', message: `'stop_token_ids' may hold at most ${MAX_STOP_TOKEN_IDS} ids.` };
  const bad = ids.findIndex((id) => !Number.isSafeInteger(id) || id < 0 || (vocabSize !== undefined && id >= vocabSize));
  if (bad === -1) return undefined;
  const rule = vocabSize === undefined ? 'token ids are non-negative integers' : `token ids are below the vocabulary size ${vocabSize}`;
  return { param: 'stop_token_ids', message: `Invalid value for 'stop_token_ids[${bad}]': ${rule}, got ${ids[bad]}.` };
}
