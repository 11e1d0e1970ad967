// With a remote prefill, the decode worker streams the first token as soon as the prefill worker has
// sampled it, before the KV arrives. The engine's stream then repeats that token: imported with the KV, or
// sampled again here if the remote prefill failed and the prompt was prefilled locally.
import type { GenerateOutput } from '@pdserve/engine';

/**
 * The engine's outputs less the first token when `streamed` (its id) was already sent: it is cut from the
 * first output that carries tokens, whose other fields (finish reason, counts) stay. A different token
 * means the recomputation diverged from what the client already has; no stream can correct that, so it
 * fails the request instead of going on with a wrong one.
 */
export async function* afterStreamedFirst(outputs: AsyncIterable<GenerateOutput>, streamed: number | undefined): AsyncGenerator<GenerateOutput> {
  let pending = streamed;
  for await (const o of outputs) {
    if (pending === undefined || o.tokenIds.length === 0) {
      yield o;
      continue;
    }
    if (o.tokenIds[0] !== pending) {
      throw new Error(`first token ${o.tokenIds[0]} computed here differs from token ${pending} already streamed from the prefill worker`);
    }
    pending = undefined;
    yield { ...o, tokenIds: o.tokenIds.slice(1), logprobs: o.logprobs?.slice(1) };
  }
}
