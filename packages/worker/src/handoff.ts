// The two ends of a pushed prefill (disaggregated request). The gateway picks a transfer id and asks the
// prefill worker to compute the prompt; the prefill worker streams the first token back at once, then
// pushes the KV to the decode worker under that id, its meta carrying the first token and the sampler's
// state (handoff-meta.ts). The gateway then sends the decode worker a Generate naming the same id; the
// decode worker admits that transfer (admission.ts) and imports the KV past its own cached prefix.
import { EngineError, type PrefilledKv } from '@pdserve/contracts';
import type { LLMEngine } from '@pdserve/engine';
import { blockCrc32, chainHashes } from '@pdserve/kv-cache';
import type { TransferReceipt, TransferSender, TransportKind } from '@pdserve/transfer';
import type { TransferAdmission } from './admission';
import { firstToWire, prefillSampling, sampledFromWire, samplingFromWire, serviceTierFromWire } from './codec';
import { decodeHandoffMeta, encodeHandoffMeta } from './handoff-meta';
import type { StoreLink } from './store-link';
import type * as W from './wire';

/**
 * The prefill worker streamed the first token before starting the transfer, so only a prefill worker that
 * died takes longer than this to begin it once the Generate is here (ms): then the decode worker prefills.
 */
export const PUSHED_BEGIN_MS = 1_000;
/** Longest a decode worker waits for a pushed transfer to arrive whole (ms). */
export const PUSHED_ARRIVE_MS = 60_000;
/** Longest a prefill worker spends pushing a prompt's KV to its decode worker (ms). */
export const PUSH_DEADLINE_MS = 60_000;

/**
 * Decode side: the KV pushed under `transferId`, imported past this worker's own cached prefix. Rejects
 * (and the caller prefills locally) if the transfer does not begin or arrive in time, fails, or does not fit.
 */
export async function receivePushedKv(
  admission: TransferAdmission,
  engine: Pick<LLMEngine, 'blockSize' | 'cachedPrefixBlocks'>,
  req: W.GenerateRequestMsg,
  transferId: string,
  signal: AbortSignal,
): Promise<PrefilledKv> {
  const expected = admission.expect(transferId, PUSHED_ARRIVE_MS);
  try {
    await raceAbort(
      within(expected.begun, PUSHED_BEGIN_MS, `KV transfer ${transferId} did not begin within ${PUSHED_BEGIN_MS} ms`),
      signal,
    );
    const { blocks, meta } = await raceAbort(expected.arrived, signal);
    const handoff = decodeHandoffMeta(meta);
    const own = engine.cachedPrefixBlocks(req.prompt_token_ids, req.cache_salt);
    if (handoff.fromBlock > own) throw new Error("pushed KV does not fit this worker's cache");
    const take = blocks.slice(own - handoff.fromBlock);
    return {
      fromBlock: own,
      blocks: take.map((b) => b.data),
      checksums: take.map((b) => b.checksum),
      firstToken: sampledFromWire(handoff.first),
      rngState: handoff.rngState,
      cachedTokens: Math.max(handoff.first.cached_tokens, Math.min(own * engine.blockSize, req.prompt_token_ids.length)),
    };
  } finally {
    expected.done();
  }
}

/** What the prefill side needs from its worker. */
export interface PrefillDeps {
  readonly engine: LLMEngine;
  readonly sender: TransferSender;
  readonly storeLink?: StoreLink;
  /** Transport to push with; default the one the request names, else 'auto'. */
  readonly sendTransport?: 'auto' | TransportKind;
}

/**
 * Prefill side: computes the prompt (past `from_block`), reports the first token through `onFirst` at once,
 * pushes the KV to the request's target and resolves with the receiver's receipt.
 */
export async function prefillAndPush(
  deps: PrefillDeps,
  req: W.PrefillRequestMsg,
  signal: AbortSignal,
  onFirst: (first: W.PrefillFirstMsg) => void,
): Promise<{
  readonly first: W.PrefillFirstMsg;
  readonly rngState?: readonly number[];
  readonly receipt: TransferReceipt;
  readonly pushSeconds: number;
}> {
  const { engine } = deps;
  const target = req.target;
  if (!target) throw new EngineError('invalid_request', 'prefill needs a transfer target', 'target');
  const sampling = prefillSampling(samplingFromWire(req.sampling));
  const cacheSalt = req.cache_salt ?? '';
  const prefetched = await deps.storeLink?.prefetch(req.prompt_token_ids, signal, cacheSalt);
  let first: W.PrefillFirstMsg | undefined;
  let kv: { blocks: readonly Uint8Array[]; rngState?: readonly [number, number, number, number] } | undefined;
  // The prefill engine orders it as the decode engine does: its tier's band, then its priority.
  const order = { priority: req.priority ?? 0, serviceTier: serviceTierFromWire(req.service_tier) };
  for await (const o of engine.generate({
    requestId: `prefill:${req.request_id}`,
    promptTokenIds: req.prompt_token_ids,
    sampling,
    signal,
    exportKv: { fromBlock: req.from_block },
    prefetched,
    cacheSalt,
    ...order,
  })) {
    if (o.tokenIds.length > 0 && !first) {
      first = firstToWire(o);
      onFirst(first); // the client's first token need not wait for the KV transfer below
    }
    if (o.kv) kv = o.kv;
  }
  if (!first || !kv) throw new EngineError('internal', signal.aborted ? 'prefill cancelled' : 'prefill produced no KV');
  const hashes = chainHashes(req.prompt_token_ids, engine.blockSize, engine.modelId, cacheSalt);
  // Each block's CRC-32 follows from its header (no pass over it); the receiver verifies it in transit.
  const blocks = kv.blocks.map((data, k) => ({ hash: hashes[req.from_block + k] ?? '0'.repeat(16), data, checksum: blockCrc32(data) }));
  const t0 = performance.now();
  const receipt = await deps.sender.send({
    peer: { grpcAddress: target.grpc_address },
    blocks,
    transferId: target.transfer_id,
    meta: encodeHandoffMeta({ first, rngState: kv.rngState, fromBlock: req.from_block }),
    transport: (deps.sendTransport ?? target.transport ?? 'auto') as 'auto' | TransportKind,
    signal,
    deadlineMs: PUSH_DEADLINE_MS,
  });
  return { first, rngState: kv.rngState, receipt, pushSeconds: (performance.now() - t0) / 1000 };
}

/** `p`, or a rejection with `message` after `ms`. */
function within<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** `p`, or a rejection as soon as `signal` aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new Error('cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
