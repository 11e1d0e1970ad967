// The gateway's engine: the HTTP API calls it exactly as it calls a local engine; it routes each
// request to a decode worker (and a prefill worker) and relays the worker's token stream.
import type { Logger } from '@pdserve/contracts';
import { EngineError, type EngineClient, type GenerateOutput, type GenerateRequest } from '@pdserve/contracts';
import { chainHashes } from '@pdserve/kv-cache';
import { explainDecision, RouterError, type Router } from '@pdserve/router';
import { randomBytes } from 'node:crypto';
import type { ServiceRecord } from '@pdserve/control-plane';
import {
  afterStreamedFirst, firstFromWire, outputFromWire, prefillFirst, samplingToWire, seededSampling, toCallError, type GenerateChunkMsg,
  type GenerateRequestMsg, type PrefillFirstMsg, type WorkerCallError,
} from '@pdserve/worker/client';
import type { ClusterView } from './cluster-view';

export interface ClusterClientOptions {
  readonly modelId: string;
  readonly maxModelLen: number;
  readonly blockSize: number;
  readonly router: Router;
  readonly view: ClusterView;
  readonly logger: Logger;
  /** Attempts on other workers when a worker is unreachable before the first token; default 2. */
  readonly retries?: number;
}

export class ClusterClient implements EngineClient {
  readonly modelId: string;
  readonly maxModelLen: number;

  constructor(private readonly opts: ClusterClientOptions) {
    this.modelId = opts.modelId;
    this.maxModelLen = opts.maxModelLen;
  }

  isReady(): boolean {
    return this.opts.view.hasDecodeWorker();
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
    const { router, view, logger } = this.opts;
    const cacheSalt = req.cacheSalt ?? '';
    const chain = chainHashes(req.promptTokenIds, this.opts.blockSize, this.modelId, cacheSalt);
    const excluded = new Set<string>();
    for (let attempt = 0; ; attempt++) {
      let decision;
      // The router memoises per worker list; a retry narrows it once, then membership is restored.
      const narrowed = excluded.size > 0 ? view.workers().filter((w) => !excluded.has(w.id)) : undefined;
      try {
        decision = router.route({ requestId: req.requestId, chain, promptTokens: req.promptTokenIds.length }, narrowed);
      } catch (err) {
        if (err instanceof RouterError) throw new EngineError('not_ready', 'no decode worker is available');
        throw err;
      } finally {
        if (narrowed) router.setWorkers(view.workers());
      }
      logger.debug({ requestId: req.requestId, decision: explainDecision(decision) }, 'routed');
      const remote = decision.prefill.prefill === 'remote' ? view.record(decision.prefill.worker) : undefined;
      let streamed = 0;
      try {
        const base: GenerateRequestMsg = {
          request_id: req.requestId,
          prompt_token_ids: [...req.promptTokenIds],
          sampling: samplingToWire(req.sampling),
          priority: req.priority ?? 0,
          prefill: LOCAL_PLAN,
          cache_salt: cacheSalt,
        };
        const decodeRecord = view.record(decision.decodeWorker);
        const wantLogprobs = req.sampling.logprobs !== undefined;
        const outputs = remote && decodeRecord
          ? this.pushedHandoff(base, remote, decodeRecord, wantLogprobs, req.signal)
          : fromWire(view.client(decision.decodeWorker).generate(base, req.signal), wantLogprobs);
        for await (const o of outputs) {
          streamed++;
          yield o;
        }
        return;
      } catch (err) {
        if (req.signal?.aborted) return;
        const e = toCallError(err);
        const unreachable = e.code === 'UNAVAILABLE' || e.code === 'DEADLINE_EXCEEDED' || e.code === 'CANCELLED';
        if (streamed === 0 && unreachable && attempt < (this.opts.retries ?? 2)) {
          logger.warn({ requestId: req.requestId, worker: decision.decodeWorker, error: e.message }, 'worker unreachable; retrying elsewhere');
          excluded.add(decision.decodeWorker);
          continue;
        }
        throw toEngineError(e, decision.decodeWorker, streamed > 0);
      }
    }
  }

  /**
   * Disaggregated: the prefill worker computes the prompt and streams its first token here, which goes to
   * the client at once, while it pushes the KV to the decode worker under a transfer id chosen here; the
   * decode worker imports it and streams on (repeating the first token, which is dropped here). The
   * sampling is seeded so that any recomputation samples the same tokens. If the prefill fails before its
   * first token, the decode worker prefills instead; if it fails after, the decode worker prefills locally
   * on its own (and its repeated first token is checked against the one already sent).
   */
  private async *pushedHandoff(
    base: GenerateRequestMsg, prefill: ServiceRecord, decode: ServiceRecord, wantLogprobs: boolean, signal: AbortSignal | undefined,
  ): AsyncGenerator<GenerateOutput> {
    const { view, logger } = this.opts;
    const req: GenerateRequestMsg = { ...base, sampling: base.sampling === null ? null : seededSampling(base.sampling) };
    const transferId = randomBytes(16).toString('hex');
    const prefillCtl = new AbortController();
    const decodeCtl = new AbortController();
    const onAbort = (): void => {
      prefillCtl.abort();
      decodeCtl.abort();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const events = view.client(prefill.id).prefill({
        request_id: req.request_id, prompt_token_ids: req.prompt_token_ids, sampling: req.sampling, from_block: 0,
        target: { grpc_address: decode.grpcAddress, transfer_id: transferId, transport: 'auto' }, cache_salt: req.cache_salt,
      }, prefillCtl.signal);
      let first: PrefillFirstMsg | undefined;
      try {
        // The rest of the prefill's stream is its receipt; should the prefill fail after its first token,
        // the decode worker notices (the transfer fails, or never begins) and prefills locally.
        ({ first } = await prefillFirst(events));
      } catch (err) {
        if (signal?.aborted) return;
        logger.warn({ requestId: req.request_id, worker: prefill.id, error: toCallError(err).message }, 'prefill worker failed; prefilling on the decode worker');
      }
      if (first === undefined) {
        prefillCtl.abort();
        yield* fromWire(view.client(decode.id).generate(req, decodeCtl.signal), wantLogprobs);
        return;
      }
      const sent = first.first_token;
      yield firstFromWire(first, wantLogprobs, first.cached_tokens);
      const plan = { mode: 'pushed', prefill_worker: prefill.id, transfer_id: transferId };
      const rest = fromWire(view.client(decode.id).generate({ ...req, prefill: plan }, decodeCtl.signal), wantLogprobs);
      // The decode worker's stream repeats the first token: checked against the one already sent, and dropped.
      yield* afterStreamedFirst(rest, sent, (got) => `decode worker ${decode.id} sampled first token ${got}, not ${sent} as already streamed`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      prefillCtl.abort();
      decodeCtl.abort();
    }
  }
}

async function* fromWire(chunks: AsyncIterable<GenerateChunkMsg>, wantLogprobs: boolean): AsyncGenerator<GenerateOutput> {
  for await (const c of chunks) yield outputFromWire(c, wantLogprobs);
}

const LOCAL_PLAN = { mode: 'local', prefill_worker: '', transfer_id: '' } as const;

/** The worker's engine error keeps its class (the call's trailers carry it); anything else is `internal`. */
function toEngineError(e: WorkerCallError, worker: string, midStream: boolean): EngineError {
  const reported = e.engineError;
  if (reported !== undefined && reported.code !== 'internal') return reported;
  return new EngineError('internal', `decode worker ${worker} failed${midStream ? ' mid-stream' : ''}: ${e.code} ${e.message}`);
}
