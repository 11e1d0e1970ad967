// KV events and load reports on subjects `pdserve.<cluster>.kv.<worker>` / `pdserve.<cluster>.load.<worker>`,
// over any SubjectTransport. Publishing never throws for connection problems: while disconnected, KV
// batches wait in a bounded buffer (oldest dropped first) and load reports are dropped (the next supersedes).
import { decodeKvBatch, decodeLoadReport, encodeKvBatch, encodeLoadReport } from './codec';
import { errorMessage, type Logger } from './log';
import { ALL_WORKERS, assertToken, kvSubject, loadSubject } from './names';
import type { ConnectionStatus, SubjectTransport } from './transport';
import type { KvEventBatch, LoadReport } from './types';

export interface EventBusOptions {
  /** KV batches kept while disconnected and sent on reconnect; beyond this the oldest are dropped. */
  readonly maxBufferedKvBatches?: number;
}

export const EVENT_BUS_DEFAULTS = { maxBufferedKvBatches: 1_024 } as const;

export type Handler<T> = (message: T) => void | Promise<void>;

export interface EventSubscription {
  unsubscribe(): void;
}

export interface SubscribeOptions {
  /** Only this worker's messages; all workers when omitted. */
  readonly worker?: string;
}

export interface EventBusStats {
  readonly published: number;
  /** KV batches waiting for the connection to come back. */
  readonly buffered: number;
  /** Messages given up on: load reports while disconnected, KV batches over the buffer, publish errors. */
  readonly dropped: number;
  readonly received: number;
  /** Received messages that failed validation (logged and skipped). */
  readonly invalid: number;
}

export interface EventBus {
  /** While not 'connected', routing should fall back to load-free or cache-blind policies as it sees fit. */
  readonly status: ConnectionStatus;
  onStatus(listener: (status: ConnectionStatus) => void): () => void;
  publishKv(batch: KvEventBatch): void;
  publishLoad(report: LoadReport): void;
  subscribeKv(handler: Handler<KvEventBatch>, options?: SubscribeOptions): EventSubscription;
  subscribeLoad(handler: Handler<LoadReport>, options?: SubscribeOptions): EventSubscription;
  stats(): EventBusStats;
  /** Resolves when earlier publishes and subscriptions have reached the server. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

interface Pending {
  readonly subject: string;
  readonly payload: Uint8Array;
}

export class TransportEventBus implements EventBus {
  private readonly maxBuffered: number;
  private readonly buffer: Pending[] = [];
  private readonly counters = { published: 0, dropped: 0, received: 0, invalid: 0 };
  private readonly unsubscribeStatus: () => void;

  constructor(
    private readonly cluster: string,
    private readonly transport: SubjectTransport,
    private readonly logger: Logger,
    options: EventBusOptions = {},
  ) {
    assertToken(cluster, 'cluster');
    this.maxBuffered = options.maxBufferedKvBatches ?? EVENT_BUS_DEFAULTS.maxBufferedKvBatches;
    this.unsubscribeStatus = transport.onStatus((status) => {
      if (status === 'connected') this.drain();
    });
  }

  get status(): ConnectionStatus {
    return this.transport.status;
  }

  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    return this.transport.onStatus(listener);
  }

  publishKv(batch: KvEventBatch): void {
    assertToken(batch.worker, 'worker id');
    const pending = { subject: kvSubject(this.cluster, batch.worker), payload: encodeKvBatch(batch) };
    if (this.transport.status === 'connected') {
      this.send(pending);
    } else if (this.transport.status === 'disconnected') {
      this.buffer.push(pending);
      if (this.buffer.length > this.maxBuffered) {
        this.buffer.shift();
        this.counters.dropped += 1;
      }
    } else {
      this.counters.dropped += 1;
    }
  }

  publishLoad(report: LoadReport): void {
    assertToken(report.worker, 'worker id');
    if (this.transport.status !== 'connected') {
      this.counters.dropped += 1;
      return;
    }
    this.send({ subject: loadSubject(this.cluster, report.worker), payload: encodeLoadReport(report) });
  }

  subscribeKv(handler: Handler<KvEventBatch>, options: SubscribeOptions = {}): EventSubscription {
    return this.subscribe(kvSubject(this.cluster, this.workerToken(options)), decodeKvBatch, handler);
  }

  subscribeLoad(handler: Handler<LoadReport>, options: SubscribeOptions = {}): EventSubscription {
    return this.subscribe(loadSubject(this.cluster, this.workerToken(options)), decodeLoadReport, handler);
  }

  stats(): EventBusStats {
    return { ...this.counters, buffered: this.buffer.length };
  }

  flush(): Promise<void> {
    return this.transport.flush();
  }

  async close(): Promise<void> {
    this.unsubscribeStatus();
    this.counters.dropped += this.buffer.length;
    this.buffer.length = 0;
    await this.transport.close();
  }

  private workerToken(options: SubscribeOptions): string {
    if (options.worker === undefined) return ALL_WORKERS;
    assertToken(options.worker, 'worker id');
    return options.worker;
  }

  private subscribe<T extends { readonly worker: string }>(
    pattern: string,
    decode: (bytes: Uint8Array) => T,
    handler: Handler<T>,
  ): EventSubscription {
    const unsubscribe = this.transport.subscribe(pattern, (subject, payload) => {
      let message: T;
      try {
        message = decode(payload);
        if (!subject.endsWith(`.${message.worker}`)) throw new Error(`worker ${message.worker} does not match subject`);
      } catch (error) {
        this.counters.invalid += 1;
        this.logger.warn({ subject, err: errorMessage(error) }, 'dropping an invalid control message');
        return;
      }
      this.counters.received += 1;
      this.invoke(handler, message, subject);
    });
    return { unsubscribe };
  }

  private invoke<T>(handler: Handler<T>, message: T, subject: string): void {
    const report = (error: unknown): void => this.logger.error({ subject, err: errorMessage(error) }, 'control message handler failed');
    try {
      const result = handler(message);
      if (result instanceof Promise) result.catch(report);
    } catch (error) {
      report(error);
    }
  }

  private send(pending: Pending): void {
    try {
      this.transport.publish(pending.subject, pending.payload);
      this.counters.published += 1;
    } catch (error) {
      this.counters.dropped += 1;
      this.logger.warn({ subject: pending.subject, err: errorMessage(error) }, 'publish failed; message dropped');
    }
  }

  private drain(): void {
    const pending = this.buffer.splice(0, this.buffer.length);
    for (const message of pending) this.send(message);
  }
}
