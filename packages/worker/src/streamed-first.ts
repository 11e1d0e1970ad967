// With a disaggregated prefill, the gateway streams the first token as soon as the prefill worker has
// sampled it, before the KV arrives. The decode worker's stream that follows repeats that token: imported
// with the KV, or sampled again if the prompt was prefilled locally.
import type { GenerateOutput } from '@pdserve/contracts';

/**
 * The engine's outputs less the first token when `streamed` (its id) was already sent: it is cut from the
 * first output that carries tokens, whose other fields (finish reason, counts) stay. A different token
 * means the recomputation diverged from what the client already has; no stream can correct that, so it
 * fails the request instead of going on with a wrong one.
 */
export async function* afterStreamedFirst(
  outputs: AsyncIterable<GenerateOutput>,
  streamed: number | undefined,
  mismatch = (got: number, sent: number): string =>
    `first token ${got} computed here differs from token ${sent} already streamed from the prefill worker`,
): AsyncGenerator<GenerateOutput> {
  let pending = streamed;
  for await (const o of outputs) {
    if (pending === undefined || o.tokenIds.length === 0) {
      yield o;
      continue;
    }
    if (o.tokenIds[0] !== pending) {
      throw new Error(mismatch(o.tokenIds[0]!, pending));
    }
    pending = undefined;
    yield { ...o, tokenIds: o.tokenIds.slice(1), logprobs: o.logprobs?.slice(1) };
  }
}
