// The gateway's engine: the HTTP API calls it exactly as it calls a local engine; it routes each
// request to a decode worker (and a prefill worker) and relays the worker's token stream.
import {
  EngineError,
  type EngineClient,
  type GenerateOutput,
  type GenerateRequest,
  type Logger,
  type ServiceTier,
} from '@pdserve/contracts';
import { chainHashes } from '@pdserve/kv-cache';
import { explainDecision, RouterError, type Router, type RoutingDecision } from '@pdserve/router';
import { randomBytes } from 'node:crypto';
import { hasFeature, type ServiceRecord } from '@pdserve/control-plane';
import {
  afterStreamedFirst,
  firstFromWire,
  generateDeadlineMs,
  outputFromWire,
  prefillDone,
  prefillFirst,
  samplingToWire,
  seededSampling,
  toCallError,
  WorkerCallError,
  type GenerateChunkMsg,
  type GenerateRequestMsg,
  type PrefillFirstMsg,
} from '@pdserve/worker/client';
import type { Admission } from './admission';
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
  /** Resumptions of one stream on another decode worker after tokens went out; default 3 (--migration-limit). */
  readonly migrationLimit?: number;
  /**
   * Disaggregated requests: the prefill worker sends each prefill chunk's KV blocks while the next chunk
   * computes, so only the last chunk's travel after the first token (default true; --kv-streaming). False:
   * the whole prompt's KV goes in one transfer after the first token.
   */
  readonly kvStreaming?: boolean;
  /**
   * With kvStreaming: the decode worker computes the prompt's last block (the one holding its last token)
   * and samples the first token itself, every block before it having streamed in while the prefill
   * worker computed them; its second token then follows one decode step later (default true;
   * --decode-computes-tail). Not for prompts without a full block below that one, nor with prompt logprobs.
   */
  readonly decodeComputesTail?: boolean;
  /** Told about each migration: resumed (seconds from the break to the next token sent) or exhausted. */
  readonly onMigration?: (m: { readonly outcome: 'resumed' | 'exhausted'; readonly seconds: number }) => void;
  /** SLO-aware admission (admission.ts); undefined admits everything. */
  readonly admission?: Admission;
  /** Told about each admission decision, and about the first token of each admitted request. */
  readonly onAdmission?: (e: AdmissionEvent) => void;
}

export type AdmissionEvent =
  | { readonly kind: 'admitted' | 'refused'; readonly tier: ServiceTier; readonly predictedTtftSeconds: number }
  | { readonly kind: 'first-token'; readonly tier: ServiceTier; readonly seconds: number };

export const MIGRATION_DEFAULTS = {
  /** Resumptions per request before the stream ends with an error event. */
  limit: 3,
  /** How long a migrating request waits for a decode worker when none is left (ms). */
  waitForWorkerMs: 5_000,
} as const;

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
    const { logger } = this.opts;
    const t0 = performance.now();
    const tier = req.serviceTier ?? 'default';
    let predictedTtft: number | undefined;
    const cacheSalt = req.cacheSalt ?? '';
    const chain = chainHashes(req.promptTokenIds, this.opts.blockSize, this.modelId, cacheSalt);
    // Seeded here, once: wherever the request is recomputed or resumed, it samples the same tokens.
    const sampling = seededSampling(samplingToWire(req.sampling));
    const wantLogprobs = req.sampling.logprobs !== undefined;
    // What the client has: every token sent, and the first attempt's cache count (usage reports that one).
    const sent: number[] = [];
    let cachedTokens: number | undefined;
    const excluded = new Set<string>();
    let retries = 0;
    let migrations = 0;
    let brokenAt: number | undefined;
    for (;;) {
      // A resumed request is placed by all it must prefill (prompt + tokens sent): its cached blocks anywhere count.
      const resumeChain =
        sent.length > 0 ? chainHashes([...req.promptTokenIds, ...sent], this.opts.blockSize, this.modelId, cacheSalt) : chain;
      const decision = await this.route(req, resumeChain, req.promptTokenIds.length + sent.length, excluded, sent.length > 0);
      const worker = decision.decodeWorker;
      logger.debug({ requestId: req.requestId, decision: explainDecision(decision), resumeAfter: sent.length }, 'routed');
      if (sent.length === 0 && retries === 0) predictedTtft = this.admit(tier, req.promptTokenIds.length, decision);
      const base: GenerateRequestMsg = {
        request_id: req.requestId,
        prompt_token_ids: [...req.promptTokenIds],
        sampling,
        priority: req.priority ?? 0,
        service_tier: req.serviceTier ?? 'default',
        prefill: LOCAL_PLAN,
        cache_salt: cacheSalt,
        ...(sent.length > 0 ? { resume_output_token_ids: [...sent] } : {}),
      };
      // A resumed stream is prefilled on its decode worker from prompt + output (prefix cache, kv-store, else computed).
      const remote =
        sent.length === 0 && decision.prefill.prefill === 'remote' ? this.opts.view.record(decision.prefill.worker) : undefined;
      const decodeRecord = this.opts.view.record(worker);
      let finished = false;
      try {
        const outputs =
          remote && decodeRecord
            ? this.pushedHandoff(base, remote, decodeRecord, wantLogprobs, req.signal)
            : fromWire(this.opts.view.client(worker).generate(base, req.signal, this.deadlineMs(base)), wantLogprobs);
        for await (const o of outputs) {
          // A worker that drains or shuts down ends its requests with 'abort': for the client, a broken stream.
          if (o.finishReason === 'abort' && req.signal?.aborted !== true)
            throw new WorkerCallError('ABORTED', 'the worker ended the request');
          cachedTokens ??= o.cachedTokens;
          if (sent.length === 0 && o.tokenIds.length > 0) this.firstToken(tier, predictedTtft, (performance.now() - t0) / 1000);
          sent.push(...o.tokenIds);
          finished ||= o.finishReason !== undefined;
          yield cachedTokens === o.cachedTokens ? o : { ...o, cachedTokens };
          if (brokenAt !== undefined && o.tokenIds.length > 0) {
            this.opts.onMigration?.({ outcome: 'resumed', seconds: (performance.now() - brokenAt) / 1000 });
            brokenAt = undefined;
          }
        }
        if (finished || req.signal?.aborted === true) return;
        throw new WorkerCallError('UNAVAILABLE', 'the stream ended before the request finished');
      } catch (err) {
        if (req.signal?.aborted === true) return;
        const e = toCallError(err);
        // Not sent there again by any request until it answers a probe (a crashed worker stays registered
        // until its lease expires).
        if (e.code === 'UNAVAILABLE') this.opts.view.markUnreachable(worker);
        if (sent.length === 0) {
          const unreachable = e.code === 'UNAVAILABLE' || e.code === 'DEADLINE_EXCEEDED' || e.code === 'CANCELLED' || e.code === 'ABORTED';
          if (unreachable && retries < (this.opts.retries ?? 2)) {
            retries++;
            logger.warn({ requestId: req.requestId, worker, error: e.message }, 'worker unreachable; retrying elsewhere');
            excluded.add(worker);
            continue;
          }
          throw toEngineError(e, worker, false);
        }
        // Tokens went out: resume on another decode worker from prompt + those tokens (a request the
        // worker refused as invalid would be refused anywhere).
        const limit = this.opts.migrationLimit ?? MIGRATION_DEFAULTS.limit;
        if (e.code === 'INVALID_ARGUMENT' || migrations >= limit) {
          this.opts.onMigration?.({ outcome: 'exhausted', seconds: 0 });
          throw new EngineError(
            'internal',
            `decode worker ${worker} failed mid-stream after ${migrations} migration(s) (limit ${limit}): ${e.code} ${e.message}`,
          );
        }
        migrations++;
        brokenAt ??= performance.now();
        logger.warn(
          { requestId: req.requestId, worker, after: sent.length, migration: migrations, error: e.message },
          'stream broke mid-generation; migrating',
        );
        excluded.add(worker);
      }
    }
  }

  /**
   * Admits the request where the router placed it, or refuses it (queue_full: 429 with the Retry-After the
   * prediction gives) when its class's SLO cannot be met there. Returns the predicted TTFT.
   */
  private admit(tier: ServiceTier, promptTokens: number, d: RoutingDecision): number | undefined {
    const { admission, router } = this.opts;
    if (admission === undefined) return undefined;
    const prefillWorker = d.prefill.prefill === 'remote' ? d.prefill.worker : d.decodeWorker;
    const verdict = admission.decide({
      tier,
      promptTokens,
      uncachedTokens: d.uncachedTokens,
      queuedPrefillTokens: router.load(prefillWorker).queuedPrefillTokens,
      decodeBatch: router.load(d.decodeWorker).running,
    });
    this.opts.onAdmission?.({ kind: verdict.admit ? 'admitted' : 'refused', tier, predictedTtftSeconds: verdict.ttftSeconds });
    if (!verdict.admit) {
      router.release(d); // not sent: its load must not count against the next requests
      throw new EngineError(
        'queue_full',
        `request refused: ${verdict.reason}; retry after ${verdict.retryAfterSeconds} s`,
        undefined,
        verdict.retryAfterSeconds,
      );
    }
    return verdict.ttftSeconds;
  }

  private firstToken(tier: ServiceTier, predicted: number | undefined, seconds: number): void {
    if (predicted === undefined) return;
    this.opts.admission?.observe(predicted, seconds);
    this.opts.onAdmission?.({ kind: 'first-token', tier, seconds });
  }

  /**
   * A decode worker for the request, past the ones that failed it. A migrating request waits a little for
   * one to (re)join rather than failing: its client already has part of the answer.
   */
  private async route(
    req: GenerateRequest,
    chain: readonly string[],
    tokens: number,
    excluded: ReadonlySet<string>,
    migrating: boolean,
  ): Promise<RoutingDecision> {
    const { router, view } = this.opts;
    const until = performance.now() + (migrating ? MIGRATION_DEFAULTS.waitForWorkerMs : 0);
    for (;;) {
      // The router memoises per worker list; a retry narrows it once, then membership is restored.
      const narrowed = excluded.size > 0 ? view.workers().filter((w) => !excluded.has(w.id)) : undefined;
      try {
        return router.route({ requestId: req.requestId, chain, promptTokens: tokens }, narrowed);
      } catch (err) {
        if (!(err instanceof RouterError)) throw err;
        if (performance.now() >= until || req.signal?.aborted === true) throw new EngineError('not_ready', 'no decode worker is available');
      } finally {
        if (narrowed) router.setWorkers(view.workers());
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A Generate's deadline: its max_tokens, capped by the model's context (not a fixed time). */
  private deadlineMs(m: GenerateRequestMsg): number {
    return generateDeadlineMs(m.prompt_token_ids.length, m.sampling?.max_tokens ?? 0, this.maxModelLen);
  }

  /**
   * Disaggregated: the prefill worker computes the prompt and streams its first token here, which goes to
   * the client at once, while it pushes the KV to the decode worker under a transfer id chosen here. The
   * decode worker's Generate goes out with the Prefill (plan 'streamed'): it expects that transfer from
   * the start and takes each prefill chunk's blocks as they are computed, so after the first token only
   * the last chunk's remain to travel and import; its stream then repeats the first token, which is
   * dropped here. The sampling is seeded so that any recomputation samples the same tokens. If the prefill
   * fails before the decode worker streams anything, that Generate is cancelled and the decode worker
   * prefills instead (with whatever blocks already came, from its prefix cache); should the transfer fail
   * on its own, the decode worker prefills locally (and its repeated first token is checked against the
   * one already sent). With decodeComputesTail (plan 'tail', where both workers list the 'leave-tail'
   * feature), the prefill worker computes the prompt but its last block and streams no token: the decode
   * worker's stream is the whole answer, and a prefill that fails before its first token replaces its
   * Generate as above.
   */
  private async *pushedHandoff(
    req: GenerateRequestMsg,
    prefill: ServiceRecord,
    decode: ServiceRecord,
    wantLogprobs: boolean,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<GenerateOutput> {
    const { view, logger } = this.opts;
    const transferId = randomBytes(16).toString('hex');
    const prefillCtl = new AbortController();
    const streamedCtl = new AbortController();
    const decodeCtl = new AbortController();
    const onAbort = (): void => {
      prefillCtl.abort();
      streamedCtl.abort();
      decodeCtl.abort();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const local = (): AsyncGenerator<GenerateOutput> =>
      fromWire(view.client(decode.id).generate(req, decodeCtl.signal, this.deadlineMs(req)), wantLogprobs);
    /** The prefill worker failed (`what`): said so, and the streamed Generate cancelled for a local one. */
    const replaceStreamed = (err: unknown, what: string): void => {
      logger.warn(
        { requestId: req.request_id, worker: prefill.id, error: toCallError(err).message },
        `${what}; prefilling on the decode worker`,
      );
      streamedCtl.abort();
    };
    const bs = this.opts.blockSize;
    // Both workers must know the protocol (an older one, in a rolling upgrade, does not list it).
    const tail =
      (this.opts.kvStreaming ?? true) &&
      (this.opts.decodeComputesTail ?? true) &&
      hasFeature(prefill, 'leave-tail') &&
      hasFeature(decode, 'leave-tail') &&
      req.sampling?.has_prompt_logprobs !== true &&
      req.prompt_token_ids.length > bs;
    try {
      const events = view.client(prefill.id).prefill(
        {
          request_id: req.request_id,
          prompt_token_ids: req.prompt_token_ids,
          sampling: req.sampling,
          from_block: 0,
          target: {
            grpc_address: decode.grpcAddress,
            transfer_id: transferId,
            transport: 'auto',
            stream_parts: this.opts.kvStreaming ?? true,
            leave_tail: tail,
          },
          cache_salt: req.cache_salt,
          priority: req.priority,
          service_tier: req.service_tier,
        },
        prefillCtl.signal,
      );
      const plan = { mode: tail ? 'tail' : 'streamed', prefill_worker: prefill.id, transfer_id: transferId };
      const streamed = fromWire(
        view.client(decode.id).generate({ ...req, prefill: plan }, streamedCtl.signal, this.deadlineMs(req)),
        wantLogprobs,
      );
      // The call starts now, not when the first token is out: the decode worker expects the parts from here on.
      const streamedHead = streamed.next();
      streamedHead.catch(() => undefined);
      if (tail) {
        // The decode worker's stream is the answer, its first token too; the Prefill's stream is only its receipt.
        const head = await Promise.race([streamedHead.then((r) => ({ r })), failureOf(prefillDone(events))]);
        if ('failed' in head) {
          if (signal?.aborted) return;
          replaceStreamed(head.failed, 'prefill worker failed');
          yield* local();
          return;
        }
        yield* prepend(head.r, streamed);
        return;
      }
      let first: PrefillFirstMsg | undefined;
      let receipt: Promise<void> | undefined;
      try {
        // The rest of the prefill's stream is its receipt: a prefill that fails after its first token is
        // noticed there, or by the decode worker (the transfer fails).
        ({ first, rest: receipt } = await prefillFirst(events));
      } catch (err) {
        if (signal?.aborted) return;
        replaceStreamed(err, 'prefill worker failed');
      }
      if (first === undefined) {
        prefillCtl.abort();
        yield* local();
        return;
      }
      const sent = first.first_token;
      yield firstFromWire(first, wantLogprobs, first.cached_tokens);
      // The decode worker's first output, unless the prefill fails before it: then its Generate is replaced.
      const head = await Promise.race([streamedHead.then((r) => ({ r })), failureOf(receipt!)]);
      let rest: AsyncIterable<GenerateOutput>;
      if ('failed' in head) {
        replaceStreamed(head.failed, 'prefill worker failed after its first token');
        rest = local();
      } else {
        rest = prepend(head.r, streamed);
      }
      // The decode worker's stream repeats the first token: checked against the one already sent, and dropped.
      yield* afterStreamedFirst(
        rest,
        sent,
        (got) => `decode worker ${decode.id} sampled first token ${got}, not ${sent} as already streamed`,
      );
    } finally {
      signal?.removeEventListener('abort', onAbort);
      prefillCtl.abort();
      streamedCtl.abort();
      decodeCtl.abort();
    }
  }
}

/** Resolves with `p`'s failure, never if it succeeds. */
function failureOf(p: Promise<unknown>): Promise<{ readonly failed: unknown }> {
  return p.then(
    () => new Promise<never>(() => undefined),
    (err: unknown) => ({ failed: err }),
  );
}

/** `head` (an iterator's first result), then the rest of `it`. */
async function* prepend<T>(head: IteratorResult<T>, it: AsyncIterator<T>): AsyncGenerator<T> {
  if (head.done === true) return;
  yield head.value;
  for (let r = await it.next(); r.done !== true; r = await it.next()) yield r.value;
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
