// Which KV transfers a worker takes in: only those it was told to expect — the transfer id a gateway
// named in a Generate (a pushed prefill), or one this worker asked a kv-store node for. Driven by the
// transfer engine's events: Begin (nothing pulled yet), a whole verified transfer, a discard. A Begin that
// comes just before the request naming it waits for it, briefly and without pulling a byte; a transfer
// nobody claims in that time is refused. Nothing unclaimed is ever kept.
import type { IncomingTransfer, KvBlock, TransferError, TransferMeta, TransferOffer, TransportKind } from '@pdserve/transfer';
import { handoffOfPart } from './handoff-meta';

/**
 * A pushed prefill's transfer and the Generate naming it leave the prefill worker and the gateway at about
 * the same moment: how long a Begin nobody expects yet waits for its claim before it is refused (ms).
 */
export const UNCLAIMED_BEGIN_MS = 2_000;

/** A transfer admitted whole: its blocks (copies, owned by the caller) and its meta. */
export interface Arrival {
  readonly blocks: KvBlock[];
  readonly meta: TransferMeta;
}

export interface Expectation {
  /** Resolves once the transfer's Begin came (or the transfer arrived); rejects if it is discarded. */
  readonly begun: Promise<void>;
  /** Resolves once the transfer is admitted; rejects if it is discarded or not in by the deadline. */
  readonly arrived: Promise<Arrival>;
  /** Forgets the transfer: from now on it is refused. */
  done(): void;
}

interface Entry {
  readonly begun: Deferred<void>;
  readonly arrived: Deferred<Arrival>;
  readonly timer: NodeJS.Timeout;
  /** A streamed handoff: takes each part (handoffPartId) as it is admitted; throwing refuses it. */
  readonly onPart?: (part: Arrival) => void;
}

export class TransferAdmission {
  private readonly expected = new Map<string, Entry>();
  /** Begins waiting for the request that names them: release admits them, the timer refuses them. */
  private readonly unclaimed = new Map<string, { readonly release: () => void }>();

  constructor(private readonly onAdmitted?: (bytes: number, seconds: number, transport: TransportKind) => void) {}

  /**
   * Expects transfer `transferId` for `arriveWithinMs`; throws if it is already expected. With `onPart`,
   * also its parts (handoffPartId(transferId, k)), each handed to `onPart` when admitted whole; they
   * neither begin nor settle the transfer itself, and one that fails is only that part lost.
   */
  expect(transferId: string, arriveWithinMs: number, onPart?: (part: Arrival) => void): Expectation {
    if (this.expected.has(transferId)) throw new Error(`transfer ${transferId} is already expected`);
    const begun = deferred<void>();
    const arrived = deferred<Arrival>();
    const timer = setTimeout(
      () => arrived.reject(new Error(`KV transfer ${transferId} did not arrive within ${arriveWithinMs} ms`)),
      arriveWithinMs,
    );
    timer.unref();
    const entry: Entry = { begun, arrived, timer, onPart };
    this.expected.set(transferId, entry);
    const waiting = this.unclaimed.get(transferId);
    if (waiting !== undefined) {
      begun.resolve();
      waiting.release();
    }
    if (onPart !== undefined) {
      for (const [id, part] of [...this.unclaimed]) if (handoffOfPart(id) === transferId) part.release();
    }
    return {
      begun: begun.promise,
      arrived: arrived.promise,
      done: () => {
        clearTimeout(timer);
        if (this.expected.get(transferId) === entry) this.expected.delete(transferId);
        arrived.reject(new Error(`KV transfer ${transferId} no longer expected`));
      },
    };
  }

  /** The receiver's onBegin: admits an expected transfer, holds an unexpected one for its claim, briefly. */
  begin(offer: TransferOffer): void | Promise<void> {
    const id = offer.transferId;
    const entry = this.expected.get(id);
    if (entry !== undefined) {
      entry.begun.resolve();
      return;
    }
    if (this.partOf(id) !== undefined) return;
    return new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        offer.signal.removeEventListener('abort', onAbort);
        this.unclaimed.delete(id);
      };
      const timer = setTimeout(() => {
        settle();
        reject(new Error(`unexpected transfer ${id}: no request named it within ${UNCLAIMED_BEGIN_MS} ms`));
      }, UNCLAIMED_BEGIN_MS);
      timer.unref();
      const onAbort = (): void => {
        settle();
        reject(new Error(`transfer ${id} discarded before its claim`));
      };
      offer.signal.addEventListener('abort', onAbort, { once: true });
      this.unclaimed.set(id, {
        release: () => {
          settle();
          resolve();
        },
      });
    });
  }

  /** The receiver's onTransfer: hands a whole, verified transfer to whoever expects it; refuses the rest. */
  admit(t: IncomingTransfer): void {
    const part = this.partOf(t.transferId);
    const entry = part ?? this.expected.get(t.transferId);
    if (entry === undefined) throw new Error(`unexpected transfer ${t.transferId}`);
    const started = performance.now();
    // The receive slab is reused once this returns: keep copies.
    const blocks = t.blocks.map((b) => ({ hash: b.hash, data: b.data.slice(), checksum: b.checksum }));
    if (part !== undefined) {
      part.onPart!({ blocks, meta: t.meta });
    } else {
      entry.begun.resolve();
      entry.arrived.resolve({ blocks, meta: t.meta });
    }
    this.onAdmitted?.(t.bytes, (performance.now() - started) / 1000, t.transport);
  }

  /** The expected streamed handoff that transfer `id` is a part of, if any. */
  private partOf(id: string): Entry | undefined {
    const of = handoffOfPart(id);
    const entry = of === undefined ? undefined : this.expected.get(of);
    return entry?.onPart === undefined ? undefined : entry;
  }

  /** The receiver's onDiscard: whoever waits for that transfer stops waiting now. */
  discard(transferId: string, error: TransferError): void {
    const entry = this.expected.get(transferId);
    entry?.begun.reject(error);
    entry?.arrived.reject(error);
  }

  /** Transfers expected and Begins waiting for their claim (tests, debugging). */
  get pending(): { readonly expected: number; readonly unclaimed: number } {
    return { expected: this.expected.size, unclaimed: this.unclaimed.size };
  }
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a rejection nobody awaits is not an error here
  return { promise, resolve, reject };
}
