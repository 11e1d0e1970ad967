// The two ends of a pushed prefill (disaggregated request). The gateway picks a transfer id and asks the
// prefill worker to compute the prompt; the prefill worker streams the first token back at once, then
// pushes the KV to the decode worker under that id, its meta carrying the first token and the sampler's
// state (handoff-meta.ts). The decode worker, sent a Generate naming the same id, admits that transfer
// (admission.ts) and imports the KV past its own cached prefix.
//
// Streamed (target.stream_parts, plan mode 'streamed'): the gateway sends the Generate together with the
// Prefill, and the prefill worker sends each chunk's full blocks as a part (handoffPartId) while the next
// chunk computes; the decode worker puts each part into its prefix cache as it lands, so the last transfer
// (the first token, the last chunk's blocks and the partial tail block) is all that is left to import
// after the first token. A part that fails is sent again in the last transfer; anything missing at the end
// makes the decode worker prefill locally: slower, never wrong.
//
// Tail (target.leave_tail, plan mode 'tail'): as streamed, but the prefill worker computes only the blocks
// below the one holding the prompt's last token and samples nothing; the last transfer carries the blocks
// not sent yet (its meta a part's, with the prefill worker's cached_tokens). The decode worker puts all of
// them into its prefix cache and computes the rest itself, sampling the first token: no import, and its
// second token one decode step after the first.
import { EngineError, type ExportedKv, type PrefilledKv } from '@pdserve/contracts';
import type { LLMEngine } from '@pdserve/engine';
import { blockCrc32, blocksBeforeLastToken, chainHashes } from '@pdserve/kv-cache';
import type { KvBlock, TransferReceipt, TransferSender, TransportKind } from '@pdserve/transfer';
import type { Arrival, TransferAdmission } from './admission';
import { firstToWire, prefillSampling, sampledFromWire, samplingFromWire, serviceTierFromWire } from './codec';
import {
  decodeHandoffMeta,
  decodeHandoffPartMeta,
  encodeHandoffMeta,
  encodeHandoffPartMeta,
  handoffPartId,
  type HandoffMeta,
} from './handoff-meta';
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
 * Longest a decode worker waits for a streamed handoff's last transfer (ms): its Generate comes before the
 * prefill starts, so this covers the prompt's queueing and computing; the gateway cancels the Generate
 * sooner if the prefill fails.
 */
export const STREAMED_ARRIVE_MS = 600_000;

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
    const cached = Math.max(handoff.first.cached_tokens, Math.min(own * engine.blockSize, req.prompt_token_ids.length));
    return prefilled(own, blocks.slice(own - handoff.fromBlock), handoff, cached);
  } finally {
    expected.done();
  }
}

/**
 * Decode side of a streamed handoff: each part is put into the prefix cache as it lands (copies kept too,
 * in case the cache evicts them); once the last transfer is in, the KV past this worker's cached prefix.
 * Rejects (and the caller prefills locally) if the last transfer fails, is late, or leaves a gap.
 */
export async function receiveStreamedKv(
  admission: TransferAdmission,
  engine: Pick<LLMEngine, 'cachedPrefixBlocks' | 'cacheBlocks'>,
  req: W.GenerateRequestMsg,
  transferId: string,
  signal: AbortSignal,
): Promise<PrefilledKv> {
  const salt = req.cache_salt ?? '';
  const { expected, byIndex, inserted } = expectParts(admission, engine, req, transferId);
  try {
    const { blocks, meta } = await raceAbort(expected.arrived, signal);
    const handoff = decodeHandoffMeta(meta);
    blocks.forEach((b, k) => byIndex.set(handoff.fromBlock + k, b));
    await Promise.all(inserted);
    const own = engine.cachedPrefixBlocks(req.prompt_token_ids, salt);
    const end = handoff.fromBlock + blocks.length;
    const rest: KvBlock[] = [];
    for (let i = own; i < end; i++) {
      const b = byIndex.get(i);
      if (b === undefined) throw new Error(`streamed KV ${transferId} lacks block ${i}`);
      rest.push(b);
    }
    return prefilled(own, rest, handoff, handoff.first.cached_tokens);
  } finally {
    expected.done();
  }
}

/**
 * Decode side of a handoff that leaves the prompt's last block to this worker (plan 'tail'): every part,
 * the last transfer too, goes into the prefix cache as it lands; once the last is in, the request is
 * computed here from the cache (only the last block misses, unless the cache evicted some). Resolves with
 * the prompt tokens the prefill worker took from its own cache (what the client's usage reports); rejects
 * (and the caller prefills locally) if the last transfer fails or is late.
 */
export async function receiveStreamedPrefix(
  admission: TransferAdmission,
  engine: Pick<LLMEngine, 'cacheBlocks'>,
  req: W.GenerateRequestMsg,
  transferId: string,
  signal: AbortSignal,
): Promise<{ readonly cachedTokens: number }> {
  const { expected, inserted, insert } = expectParts(admission, engine, req, transferId);
  try {
    const { blocks, meta } = await raceAbort(expected.arrived, signal);
    const last = decodeHandoffPartMeta(meta);
    if (last.cachedTokens === undefined) throw new Error(`streamed KV ${transferId}: the last transfer lacks cached_tokens`);
    insert(last.fromBlock, blocks);
    await Promise.all(inserted);
    return { cachedTokens: Math.min(last.cachedTokens, req.prompt_token_ids.length) };
  } finally {
    expected.done();
  }
}

/**
 * Expects the handoff `transferId` and its parts, each put into the prefix cache (and kept, by block index)
 * as it lands; a part whose meta is malformed is refused.
 */
function expectParts(
  admission: TransferAdmission,
  engine: Pick<LLMEngine, 'cacheBlocks'>,
  req: W.GenerateRequestMsg,
  transferId: string,
): {
  readonly expected: ReturnType<TransferAdmission['expect']>;
  readonly byIndex: Map<number, KvBlock>;
  readonly inserted: Promise<number>[];
  readonly insert: (fromBlock: number, blocks: readonly KvBlock[]) => void;
} {
  const salt = req.cache_salt ?? '';
  const byIndex = new Map<number, KvBlock>();
  const inserted: Promise<number>[] = [];
  const insert = (fromBlock: number, blocks: readonly KvBlock[]): void => {
    blocks.forEach((b, k) => byIndex.set(fromBlock + k, b));
    const kv = { fromBlock, blocks: blocks.map((b) => b.data), checksums: blocks.map((b) => b.checksum) };
    inserted.push(engine.cacheBlocks(req.prompt_token_ids, salt, kv));
  };
  const expected = admission.expect(transferId, STREAMED_ARRIVE_MS, (part: Arrival) =>
    insert(decodeHandoffPartMeta(part.meta).fromBlock, part.blocks),
  );
  return { expected, byIndex, inserted, insert };
}

/** What the decode engine imports: `blocks` from block `fromBlock` on, and the first token and sampler state the meta carried. */
function prefilled(fromBlock: number, blocks: readonly KvBlock[], handoff: HandoffMeta, cachedTokens: number): PrefilledKv {
  return {
    fromBlock,
    blocks: blocks.map((b) => b.data),
    checksums: blocks.map((b) => b.checksum),
    firstToken: sampledFromWire(handoff.first),
    rngState: handoff.rngState,
    cachedTokens,
  };
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
 * pushes the KV to the request's target and resolves with the receiver's receipt. With `target.leave_tail`,
 * the prompt's last block is left out and nothing is sampled (no `first`): the target computes the rest.
 */
export async function prefillAndPush(
  deps: PrefillDeps,
  req: W.PrefillRequestMsg,
  signal: AbortSignal,
  onFirst: (first: W.PrefillFirstMsg) => void,
): Promise<{
  readonly first?: W.PrefillFirstMsg;
  readonly rngState?: readonly number[];
  readonly cachedTokens: number;
  readonly receipt: TransferReceipt;
  readonly pushSeconds: number;
}> {
  const { engine } = deps;
  const target = req.target;
  if (!target) throw new EngineError('invalid_request', 'prefill needs a transfer target', 'target');
  const sampling = prefillSampling(samplingFromWire(req.sampling));
  const leaveTail = target.leave_tail === true;
  // Left to the target: the block holding the last prompt token (a full one too). At least one block goes.
  const computeTo = leaveTail
    ? blocksBeforeLastToken(req.prompt_token_ids.length, engine.blockSize) * engine.blockSize
    : req.prompt_token_ids.length;
  if (leaveTail && computeTo <= req.from_block * engine.blockSize)
    throw new EngineError('invalid_request', 'leave_tail needs a full block past from_block below the last prompt token', 'target');
  if (leaveTail && sampling.promptLogprobs !== undefined)
    throw new EngineError('invalid_request', 'prompt logprobs need the whole prompt computed: leave_tail cannot give them', 'target');
  const cacheSalt = req.cache_salt ?? '';
  const prefetched = await deps.storeLink?.prefetch(req.prompt_token_ids, signal, cacheSalt);
  const hashes = chainHashes(req.prompt_token_ids, engine.blockSize, engine.modelId, cacheSalt);
  // Each block's CRC-32 follows from its header (no pass over it); the receiver verifies it in transit.
  const toSend = (from: number, data: readonly Uint8Array[]): KvBlock[] =>
    data.map((d, k) => ({ hash: hashes[from + k] ?? '0'.repeat(16), data: d, checksum: blockCrc32(d) }));
  const send = (blocks: KvBlock[], transferId: string, meta: Record<string, string>): Promise<TransferReceipt> =>
    deps.sender.send({
      peer: { grpcAddress: target.grpc_address },
      blocks,
      transferId,
      meta,
      transport: (deps.sendTransport ?? target.transport ?? 'auto') as 'auto' | TransportKind,
      signal,
      deadlineMs: PUSH_DEADLINE_MS,
    });
  const parts =
    target.stream_parts === true
      ? new PartSender(req.from_block, (p, k) =>
          send(toSend(p.fromBlock, p.blocks), handoffPartId(target.transfer_id, k), encodeHandoffPartMeta(p)),
        )
      : undefined;
  let first: W.PrefillFirstMsg | undefined;
  let kv: ExportedKv | undefined;
  let cachedTokens = 0;
  // The prefill engine orders it as the decode engine does: its tier's band, then its priority.
  const order = { priority: req.priority ?? 0, serviceTier: serviceTierFromWire(req.service_tier) };
  try {
    for await (const o of engine.generate({
      requestId: `prefill:${req.request_id}`,
      promptTokenIds: leaveTail ? req.prompt_token_ids.slice(0, computeTo) : req.prompt_token_ids,
      sampling,
      signal,
      exportKv: {
        fromBlock: req.from_block,
        withoutToken: leaveTail,
        ...(parts ? { onBlocks: (p: ExportedKv) => parts.add(p) } : {}),
      },
      prefetched,
      cacheSalt,
      ...order,
    })) {
      if (o.tokenIds.length > 0 && !first) {
        first = firstToWire(o);
        onFirst(first); // the client's first token need not wait for the KV transfer below
      }
      if (o.kv) {
        kv = o.kv;
        cachedTokens = o.cachedTokens;
      }
    }
  } finally {
    await parts?.settled(); // nothing in flight outlives the request
  }
  if ((!first && !leaveTail) || !kv) throw new EngineError('internal', signal.aborted ? 'prefill cancelled' : 'prefill produced no KV');
  // What the decode worker has not confirmed yet goes last, with the first token (or, leaving the tail, what it cached).
  const unsent = parts?.unconfirmed(kv) ?? kv;
  const t0 = performance.now();
  const receipt = await send(
    toSend(unsent.fromBlock, unsent.blocks),
    target.transfer_id,
    first
      ? encodeHandoffMeta({ first, rngState: kv.rngState, fromBlock: unsent.fromBlock })
      : encodeHandoffPartMeta({ fromBlock: unsent.fromBlock, cachedTokens }),
  );
  const streamed = parts?.confirmed ?? { blocks: 0, bytes: 0 };
  return {
    ...(first ? { first, rngState: kv.rngState } : {}),
    cachedTokens,
    receipt: { ...receipt, blocks: receipt.blocks + streamed.blocks, bytes: receipt.bytes + streamed.bytes },
    pushSeconds: (performance.now() - t0) / 1000,
  };
}

/**
 * The parts of a streamed handoff, one transfer in flight at a time: what the engine exported meanwhile goes
 * as one part once it is in, so a slow link sends fewer, larger parts rather than falling behind. The
 * first part that fails ends the streaming; it and everything after go with the last transfer, as does
 * whatever is still waiting when the prefill ends (only the part in flight is waited for).
 */
class PartSender {
  /** Exported and not sent (or failed), in order: contiguous from confirmedTo. */
  private readonly waiting: ExportedKv[] = [];
  private inFlight: Promise<void> | undefined;
  private next = 0;
  private stopped = false;
  /** Blocks [fromBlock, confirmedTo) are in at the decode worker. */
  private confirmedTo: number;
  readonly confirmed = { blocks: 0, bytes: 0 };

  constructor(
    fromBlock: number,
    private readonly sendPart: (part: ExportedKv, index: number) => Promise<TransferReceipt>,
  ) {
    this.confirmedTo = fromBlock;
  }

  add(part: ExportedKv): void {
    this.waiting.push(part);
    this.pump();
  }

  /** Sends no more parts and resolves once none is in flight. */
  async settled(): Promise<void> {
    this.stopped = true;
    while (this.inFlight !== undefined) await this.inFlight;
  }

  /** `last` (the engine's final export) preceded by every block the decode worker did not confirm. */
  unconfirmed(last: ExportedKv): ExportedKv {
    if (this.waiting.length === 0) return last;
    const blocks = [...this.waiting.flatMap((p) => p.blocks), ...last.blocks];
    return { fromBlock: this.waiting[0]!.fromBlock, blocks, rngState: last.rngState };
  }

  private pump(): void {
    if (this.inFlight !== undefined || this.stopped || this.waiting.length === 0) return;
    const part: ExportedKv = { fromBlock: this.waiting[0]!.fromBlock, blocks: this.waiting.flatMap((p) => p.blocks) };
    if (part.fromBlock !== this.confirmedTo) {
      this.stopped = true; // a gap (not expected from the engine): the last transfer carries it all
      return;
    }
    const taken = this.waiting.splice(0);
    this.inFlight = this.sendPart(part, this.next++).then(
      (r) => {
        this.confirmedTo = part.fromBlock + part.blocks.length;
        this.confirmed.blocks += r.blocks;
        this.confirmed.bytes += r.bytes;
        this.inFlight = undefined;
        this.pump();
      },
      () => {
        this.waiting.unshift(...taken);
        this.stopped = true;
        this.inFlight = undefined;
      },
    );
  }
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
