// A typed client of the Worker service, with a deadline on every call and cancellation by AbortSignal.
import { makeGenericClientConstructor, Metadata, type ChannelCredentials, type Client, type ClientReadableStream } from '@grpc/grpc-js';
import type { EngineError } from '@pdserve/contracts';
import { callFailure, callUnary, channelCredentials, tlsChannelOptions, type TlsMaterial, type UnaryMethod } from '@pdserve/rpc';
import { engineErrorOf } from './errors';
import { DEADLINES, generateDeadlineMs, WORKER_GRPC_OPTIONS, workerService } from './proto';
import type * as W from './wire';

/**
 * A failed worker call: the gRPC status code name, the worker's message, and the engine's failure class
 * when the worker reported one (its trailers; see errors.ts).
 */
export class WorkerCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly engineError?: EngineError,
  ) {
    super(message);
    this.name = 'WorkerCallError';
  }
}

type ServerStream<Req, Res> = (req: Req, meta: Metadata, opts: { deadline: number }) => ClientReadableStream<Res>;

interface RawWorkerClient extends Client {
  Generate: ServerStream<W.GenerateRequestMsg, W.GenerateChunkMsg>;
  Prefill: ServerStream<W.PrefillRequestMsg, W.PrefillEventMsg>;
  Health: UnaryMethod<W.HealthRequestMsg, W.HealthResponseMsg>;
  Stats: UnaryMethod<W.StatsRequestMsg, W.StatsResponseMsg>;
  BlockSnapshot: UnaryMethod<W.BlockSnapshotRequestMsg, W.BlockSnapshotResponseMsg>;
}

let Ctor: (new (address: string, creds: ChannelCredentials, opts: object) => RawWorkerClient) | undefined;

export function toCallError(err: unknown): WorkerCallError {
  if (err instanceof WorkerCallError) return err;
  const { code, message } = callFailure(err);
  return new WorkerCallError(code, message, engineErrorOf((err as { metadata?: Metadata }).metadata, message));
}

export class WorkerClient {
  private readonly raw: RawWorkerClient;

  /** `tls`: mTLS with the cluster's certificates (plaintext without). */
  constructor(
    readonly address: string,
    tls?: TlsMaterial,
  ) {
    Ctor ??= makeGenericClientConstructor(workerService(), 'Worker') as unknown as typeof Ctor;
    this.raw = new Ctor!(address, channelCredentials(tls), { ...WORKER_GRPC_OPTIONS, ...tlsChannelOptions(tls) });
  }

  /**
   * Streams a request's tokens; aborting the signal cancels the call (and the request on the worker). The
   * deadline follows the request's length (generateDeadlineMs; pass the model's context to cap it).
   */
  generate(
    req: W.GenerateRequestMsg,
    signal?: AbortSignal,
    deadlineMs: number = generateDeadlineMs(req.prompt_token_ids.length, req.sampling?.max_tokens ?? 0, Infinity),
  ): AsyncGenerator<W.GenerateChunkMsg> {
    return this.stream(this.raw.Generate, req, deadlineMs, signal);
  }

  /** Streams a prefill's `first` and `done` events; aborting the signal cancels the call (and the prefill). */
  prefill(req: W.PrefillRequestMsg, signal?: AbortSignal, deadlineMs: number = DEADLINES.prefill): AsyncGenerator<W.PrefillEventMsg> {
    return this.stream(this.raw.Prefill, req, deadlineMs, signal);
  }

  health(deadlineMs: number = DEADLINES.health): Promise<W.HealthResponseMsg> {
    return this.unary(this.raw.Health, {}, deadlineMs);
  }
  stats(): Promise<W.StatsResponseMsg> {
    return this.unary(this.raw.Stats, {}, DEADLINES.stats);
  }
  snapshot(): Promise<W.BlockSnapshotResponseMsg> {
    return this.unary(this.raw.BlockSnapshot, {}, DEADLINES.snapshot);
  }

  close(): void {
    this.raw.close();
  }

  private async *stream<Req, Res>(fn: ServerStream<Req, Res>, req: Req, deadlineMs: number, signal?: AbortSignal): AsyncGenerator<Res> {
    const call = fn.call(this.raw, req, new Metadata(), { deadline: Date.now() + deadlineMs });
    const onAbort = (): void => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<Res>) yield msg;
    } catch (err) {
      throw toCallError(err);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  private unary<Req, Res>(fn: UnaryMethod<Req, Res>, req: Req, deadlineMs: number): Promise<Res> {
    return callUnary(this.raw, fn, req, deadlineMs, toCallError);
  }
}

/**
 * A Prefill stream's `first` event, and the rest of the stream (its receipt) read in the background: the
 * KV needs nothing from it. Throws if the stream fails or does not start with `first`.
 */
export async function prefillFirst(
  events: AsyncGenerator<W.PrefillEventMsg>,
): Promise<{ readonly first: W.PrefillFirstMsg; readonly rest: Promise<void> }> {
  const it = events[Symbol.asyncIterator]();
  const head = await it.next();
  if (head.done === true || head.value.kind !== 'first') throw new Error('prefill stream did not start with the first token');
  const rest = (async (): Promise<void> => {
    for (let r = await it.next(); r.done !== true; r = await it.next()) {
      /* `done`: the prefill worker's receipt */
    }
  })();
  rest.catch(() => undefined); // awaited by those who care; its failure otherwise shows in the transfer
  return { first: head.value.first, rest };
}

/** A Prefill stream that carries no `first` (target.leave_tail), read to its end: resolves with its `done`. */
export async function prefillDone(events: AsyncGenerator<W.PrefillEventMsg>): Promise<W.PrefillResponseMsg> {
  let done: W.PrefillResponseMsg | undefined;
  for await (const e of events) {
    if (e.kind !== 'done' || done !== undefined) throw new Error('a prefill that leaves the tail streams one done and nothing else');
    done = e.done;
  }
  if (done === undefined) throw new Error('prefill stream ended without done');
  return done;
}
