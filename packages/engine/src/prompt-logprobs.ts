// Prompt logprobs (vLLM's prompt_logprobs, and what `echo` with `logprobs` shows): for each prompt token
// after the first, its log-probability under the model given the tokens before it, its rank, and the
// most likely alternatives. A sequence that asks for them computes its whole prompt (no prefix cache: a
// cached block has no logits) with the logits of every position, and sends them with its first token.
import type { PromptLogprob } from '@pdserve/contracts';

/** The log-softmax of one logits row at `tokenId`, its rank (1 = most likely) and the top `k` tokens. */
export function promptLogprobOf(row: Float32Array, tokenId: number, k: number): PromptLogprob {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  const own = row[tokenId]!;
  let above = 0;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    sum += Math.exp(v - max);
    if (v > own) above++;
  }
  const logNorm = max + Math.log(sum);
  return {
    tokenId,
    logprob: own - logNorm,
    rank: above + 1,
    top: topK(row, k).map((id) => ({ tokenId: id, logprob: row[id]! - logNorm })),
  };
}

/** Ids of the k largest entries, largest first (ties: lower id first); k is small (≤ MAX_LOGPROBS). */
function topK(row: Float32Array, k: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < row.length && k > 0; i++) {
    if (ids.length === k && row[i]! <= row[ids[k - 1]!]!) continue;
    let at = ids.length === k ? k - 1 : ids.length;
    while (at > 0 && row[ids[at - 1]!]! < row[i]!) at--;
    ids.splice(at, 0, i);
    if (ids.length > k) ids.pop();
  }
  return ids;
}
