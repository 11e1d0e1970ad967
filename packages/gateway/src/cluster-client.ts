// The gateway's engine: the HTTP API calls it exactly as it calls a local engine; it routes each
// request to a decode worker (and a prefill worker) and relays the worker's token stream.
import type { Logger } from '@pdserve/api';
import { EngineError, type EngineClient, type EngineStats, type GenerateOutput, type GenerateRequest } from '@pdserve/engine';
import { chainHashes } from '@pdserve/kv-cache';
import { explainDecision, RouterError, type Router } from '@pdserve/router';
import { outputFromWire, samplingToWire, toCallError, type WorkerCallError } from '@pdserve/worker';
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

  stats(): EngineStats {
    let running = 0;
    let waiting = 0;
    for (const w of this.opts.view.workers()) {
      const l = this.opts.router.loads.get(w.id);
      running += l.running;
      waiting += l.waiting;
    }
    return {
      running, waiting, freeBlocks: 0, cachedBlocks: 0, totalBlocks: 0, usedBlocks: 0, prefixCacheHitTokens: 0, prefixCacheQueryTokens: 0,
      preemptions: 0, prefillTokensComputed: 0, queuedPrefillTokens: 0, importFallbacks: 0, prefetchedTokens: 0, prefetchRejects: 0, steps: 0, modelSeconds: 0, overheadSeconds: 0,
    };
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateOutput> {
    const { router, view, logger } = this.opts;
    const chain = chainHashes(req.promptTokenIds, this.opts.blockSize, this.modelId);
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
      logger.debug('routed', { requestId: req.requestId, decision: explainDecision(decision) });
      const remote = decision.prefill.prefill === 'remote' ? view.record(decision.prefill.worker) : undefined;
      let streamed = 0;
      try {
        const chunks = view.client(decision.decodeWorker).generate(
          {
            request_id: req.requestId,
            prompt_token_ids: [...req.promptTokenIds],
            sampling: samplingToWire(req.sampling),
            priority: req.priority ?? 0,
            prefill: remote
              ? { mode: 'remote', prefill_worker: remote.id, prefill_address: remote.grpcAddress }
              : { mode: 'local', prefill_worker: '', prefill_address: '' },
          },
          req.signal,
        );
        for await (const chunk of chunks) {
          streamed++;
          yield outputFromWire(chunk, req.sampling.logprobs !== undefined);
        }
        return;
      } catch (err) {
        if (req.signal?.aborted) return;
        const e = toCallError(err);
        const unreachable = e.code === 'UNAVAILABLE' || e.code === 'DEADLINE_EXCEEDED' || e.code === 'CANCELLED';
        if (streamed === 0 && unreachable && attempt < (this.opts.retries ?? 2)) {
          logger.warn('worker unreachable; retrying elsewhere', { requestId: req.requestId, worker: decision.decodeWorker, error: e.message });
          excluded.add(decision.decodeWorker);
          continue;
        }
        throw toEngineError(e, decision.decodeWorker, streamed > 0);
      }
    }
  }
}

function toEngineError(e: WorkerCallError, worker: string, midStream: boolean): EngineError {
  switch (e.code) {
    case 'INVALID_ARGUMENT':
      return new EngineError(/context length/.test(e.message) ? 'context_length_exceeded' : 'invalid_request', e.message);
    case 'RESOURCE_EXHAUSTED':
      return new EngineError('queue_full', e.message);
    default:
      return new EngineError('internal', `decode worker ${worker} failed${midStream ? ' mid-stream' : ''}: ${e.code} ${e.message}`);
  }
}
