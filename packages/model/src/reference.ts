import type { ModelRunner } from './runner';
import { Sampler, isStopToken } from './sampler';
import type { SampledToken, SamplingParams } from './sampling';

export interface ReferenceResult {
  readonly tokenIds: readonly number[];
  readonly logprobs: readonly SampledToken[];
  /** 'stop' = EOS or a stop token id; 'length' = max tokens or the context is full. */
  readonly finishReason: 'stop' | 'length';
}

/**
 * The oracle: one sequence, no cache reuse, no batching — prefill the whole prompt, then feed each
 * step's `present` straight back as `past`. Every cache path and topology must match its tokens.
 * Stop strings are left to the caller (they need detokenized text).
 */
export async function referenceGenerate(
  runner: ModelRunner,
  promptTokenIds: readonly number[],
  params: SamplingParams,
  /** Sees each token as it is sampled; returning false stops generation (e.g. a stop string matched). */
  onToken?: (t: SampledToken) => boolean | void,
): Promise<ReferenceResult> {
  const { spec } = runner;
  if (promptTokenIds.length === 0) throw new Error('prompt is empty');
  if (promptTokenIds.length >= spec.maxPositionEmbeddings) {
    throw new Error(`prompt has ${promptTokenIds.length} tokens; the model's context is ${spec.maxPositionEmbeddings} tokens`);
  }
  const sampler = new Sampler(params, spec.vocabSize, spec.eosTokenIds);
  const output: number[] = [];
  const logprobs: SampledToken[] = [];
  let step = await runner.forward({ rows: [{ tokenIds: promptTokenIds, pastLen: 0 }], pastWidth: 0 });
  let pastLen = promptTokenIds.length;
  for (;;) {
    const t = sampler.sample(step.logits.subarray(0, spec.vocabSize), promptTokenIds, output);
    output.push(t.tokenId);
    logprobs.push(t);
    if (onToken?.(t) === false) return { tokenIds: output, logprobs, finishReason: 'stop' };
    if (isStopToken(t.tokenId, params, spec.eosTokenIds)) return { tokenIds: output, logprobs, finishReason: 'stop' };
    if (output.length >= params.maxTokens || pastLen + 1 >= spec.maxPositionEmbeddings) {
      return { tokenIds: output, logprobs, finishReason: 'length' };
    }
    step = await runner.forward({ rows: [{ tokenIds: [t.tokenId], pastLen }], pastWidth: pastLen, past: step.present });
    pastLen += 1;
  }
}
