/** How the next token is chosen. Field semantics follow vLLM / the OpenAI API. */
export interface SamplingParams {
  /** 0 means greedy (argmax). */
  readonly temperature: number;
  /** Nucleus sampling mass; 1 disables. */
  readonly topP: number;
  /** Keep the k most likely tokens; 0 (or -1) disables. */
  readonly topK: number;
  /** Drop tokens whose probability is below minP × the top probability; 0 disables. */
  readonly minP: number;
  /** Multiplicative penalty on logits of tokens seen in prompt or output (HF/vLLM semantics); 1 disables. */
  readonly repetitionPenalty: number;
  /** Subtracted once from logits of tokens that appear in the output; 0 disables. */
  readonly presencePenalty: number;
  /** Subtracted per occurrence from logits of tokens in the output; 0 disables. */
  readonly frequencyPenalty: number;
  /** Per-request seed: the same seed gives the same tokens. Undefined means a random seed. */
  readonly seed?: number;
  /** Maximum number of generated tokens. */
  readonly maxTokens: number;
  /** Token ids that end generation (in addition to the model's EOS unless ignoreEos). */
  readonly stopTokenIds: readonly number[];
  /** Strings that end generation; matched on detokenized text, not included in the output. */
  readonly stop: readonly string[];
  /** Keep generating past EOS (benchmarks). */
  readonly ignoreEos: boolean;
  /** Number of top alternatives to return per generated token; undefined = no logprobs at all. */
  readonly logprobs?: number;
  /** Added to the logit of each listed token id before sampling (OpenAI: values in [-100, 100]). */
  readonly logitBias?: Readonly<Record<number, number>>;
  /** EOS and stopTokenIds cannot be sampled before this many tokens are generated; 0 disables. */
  readonly minTokens?: number;
  /** Constrains the output to a grammar; the engine compiles it against the model's vocabulary. */
  readonly structuredOutput?: StructuredOutput;
  /**
   * Logprobs of the prompt's tokens with this many top alternatives each (vLLM's prompt_logprobs);
   * undefined = none. The prompt is then computed whole, without the prefix cache.
   */
  readonly promptLogprobs?: number;
}

/**
 * A grammar the output must follow, as plain data (it crosses gRPC). json_schema: `strict` (default
 * true) generates only listed properties when a schema omits additionalProperties; false follows JSON
 * Schema's default and allows others.
 */
export type StructuredOutput =
  | { readonly kind: 'json_object' }
  | { readonly kind: 'json_schema'; readonly schema: unknown; readonly strict?: boolean };

export const defaultSamplingParams: SamplingParams = {
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  maxTokens: 16,
  stopTokenIds: [],
  stop: [],
  ignoreEos: false,
};

export function samplingParams(p: Partial<SamplingParams>): SamplingParams {
  return { ...defaultSamplingParams, ...p };
}

export interface TokenLogprob {
  readonly tokenId: number;
  readonly logprob: number;
}

/** One sampled token with its log-probability and, if asked, the top alternatives. */
export interface SampledToken {
  readonly tokenId: number;
  readonly logprob: number;
  readonly topLogprobs?: readonly TokenLogprob[];
}
