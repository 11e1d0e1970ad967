// Initial weight scales. A random model only has to be a good test subject: greedy output must depend on
// the prompt (not one token repeated for everything) and the top-1 logit should beat the runner-up by a
// margin far above float rounding, so batched and unbatched runs agree token for token.
import type { TinyShape } from './options';

/** Embedding std: large, so each token's own direction survives the residual stream (HF's 0.02 washes out). */
export const EMBED_STD = 1.0;
/** Query/key gain over 1/√fan_in: attention scores of std ≈ gain², sharp enough to make context matter. */
export const QK_GAIN = 1.5;
/** Std of logits produced by lm_head from a unit-RMS hidden state; sets how peaked sampling is. */
export const LOGIT_STD = 4.0;
/** RMSNorm weights are 1 ± this (std), so a mis-wired norm weight changes outputs. */
export const NORM_JITTER = 0.05;

export interface InitScale {
  readonly mean: number;
  readonly std: number;
}

export const init = {
  embedding: (): InitScale => ({ mean: 0, std: EMBED_STD }),
  norm: (): InitScale => ({ mean: 1, std: NORM_JITTER }),
  /** Projections keep the activation scale: std 1/√fan_in, times an optional gain. */
  linear: (fanIn: number, gain = 1): InitScale => ({ mean: 0, std: gain / Math.sqrt(fanIn) }),
  lmHead: (s: TinyShape): InitScale => ({ mean: 0, std: LOGIT_STD / Math.sqrt(s.hidden) }),
  /**
   * The final norm. Tied to the embedding, lm_head's rows have std EMBED_STD, not LOGIT_STD/√hidden;
   * scaling the final norm by their ratio gives the logits the same spread as an untied head.
   */
  finalNorm: (s: TinyShape): InitScale =>
    s.tieEmbeddings
      ? { mean: LOGIT_STD / (EMBED_STD * Math.sqrt(s.hidden)), std: (NORM_JITTER * LOGIT_STD) / (EMBED_STD * Math.sqrt(s.hidden)) }
      : init.norm(),
  /** q/k/v biases (Qwen2): small beside the projections' unit-scale outputs, large enough to matter. */
  bias: (): InitScale => ({ mean: 0, std: 0.1 }),
};
