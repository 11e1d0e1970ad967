// A typed client of one kv-store node, with a deadline on every call; `put` runs the whole two-phase put
// (BeginPut, blocks through the transfer engine, CommitPut; RevokePut on failure).
import { credentials, makeGenericClientConstructor, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { blockCrc32 } from '@pdserve/kv-cache';
import { callUnary, type UnaryMethod } from '@pdserve/rpc';
import type { KvBlock, TransferSender, TransportKind } from '@pdserve/transfer';
import { KV_STORE_DEADLINES, KV_STORE_GRPC_OPTIONS, kvStoreService } from './proto.js';
import type * as W from './wire.js';

/** A failed kv-store call: the gRPC status name (INVALID_ARGUMENT, NOT_FOUND, …) and the store's message. */
export class KvStoreCallError extends Error {
  override readonly name = 'KvStoreCallError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface RawKvStoreClient extends Client {
  BeginPut: UnaryMethod<W.BeginPutRequestMsg, W.BeginPutResponseMsg>;
  CommitPut: UnaryMethod<W.CommitPutRequestMsg, W.CommitPutResponseMsg>;
  RevokePut: UnaryMethod<W.RevokePutRequestMsg, W.RevokePutResponseMsg>;
  Get: UnaryMethod<W.GetRequestMsg, W.GetResponseMsg>;
  Exists: UnaryMethod<W.HashesRequestMsg, W.TiersResponseMsg>;
  LongestPrefix: UnaryMethod<W.HashesRequestMsg, W.TiersResponseMsg>;
  Remove: UnaryMethod<W.HashesRequestMsg, W.RemoveResponseMsg>;
  Pin: UnaryMethod<W.PinRequestMsg, W.PinResponseMsg>;
  Snapshot: UnaryMethod<W.SnapshotRequestMsg, W.SnapshotResponseMsg>;
  Stats: UnaryMethod<W.StoreStatsRequestMsg, W.StoreStatsResponseMsg>;
  Health: UnaryMethod<W.StoreHealthRequestMsg, W.StoreHealthResponseMsg>;
}

type Ctor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>, opts: object) => RawKvStoreClient;
let ctor: Ctor | undefined;

export function toStoreCallError(err: unknown): KvStoreCallError {
  if (err instanceof KvStoreCallError) return err;
  const e = err as Partial<ServiceError>;
  const code = typeof e.code === 'number' ? (status[e.code] ?? String(e.code)) : 'UNKNOWN';
  return new KvStoreCallError(code, e.details || e.message || String(err));
}

export interface PutOptions {
  readonly ttlMs?: number;
  readonly transport?: 'auto' | TransportKind;
  readonly signal?: AbortSignal;
  readonly deadlineMs?: number;
}

export interface PutReceipt {
  readonly stored: readonly string[];
  readonly alreadyStored: readonly string[];
  /** Bytes that travelled (blocks the store already held are not sent). */
  readonly bytes: number;
  readonly transport: TransportKind | undefined;
}

export class KvStoreClient {
  private readonly raw: RawKvStoreClient;

  constructor(readonly address: string) {
    ctor ??= makeGenericClientConstructor(kvStoreService(), 'KvStore') as unknown as Ctor;
    this.raw = new ctor(address, credentials.createInsecure(), KV_STORE_GRPC_OPTIONS);
  }

  beginPut(req: W.BeginPutRequestMsg, signal?: AbortSignal): Promise<W.BeginPutResponseMsg> {
    return this.unary(this.raw.BeginPut, req, KV_STORE_DEADLINES.control, signal);
  }
  commitPut(putId: string): Promise<W.CommitPutResponseMsg> {
    return this.unary(this.raw.CommitPut, { put_id: putId }, KV_STORE_DEADLINES.control);
  }
  revokePut(putId: string): Promise<W.RevokePutResponseMsg> {
    return this.unary(this.raw.RevokePut, { put_id: putId }, KV_STORE_DEADLINES.control);
  }
  /** The store sends what it finds to `req.sink` and answers once the sink admitted it. */
  get(req: W.GetRequestMsg, signal?: AbortSignal): Promise<W.GetResponseMsg> {
    return this.unary(this.raw.Get, req, KV_STORE_DEADLINES.get, signal);
  }
  exists(modelId: string, hashes: readonly string[], signal?: AbortSignal): Promise<W.TiersResponseMsg> {
    return this.unary(this.raw.Exists, { model_id: modelId, hashes: [...hashes] }, KV_STORE_DEADLINES.control, signal);
  }
  longestPrefix(modelId: string, hashes: readonly string[]): Promise<W.TiersResponseMsg> {
    return this.unary(this.raw.LongestPrefix, { model_id: modelId, hashes: [...hashes] }, KV_STORE_DEADLINES.control);
  }
  remove(modelId: string, hashes: readonly string[]): Promise<W.RemoveResponseMsg> {
    return this.unary(this.raw.Remove, { model_id: modelId, hashes: [...hashes] }, KV_STORE_DEADLINES.control);
  }
  pin(modelId: string, hashes: readonly string[], ttlMs: number): Promise<W.PinResponseMsg> {
    return this.unary(this.raw.Pin, { model_id: modelId, hashes: [...hashes], ttl_ms: ttlMs }, KV_STORE_DEADLINES.control);
  }
  snapshot(): Promise<W.SnapshotResponseMsg> {
    return this.unary(this.raw.Snapshot, {}, KV_STORE_DEADLINES.snapshot);
  }
  stats(): Promise<W.StoreStatsResponseMsg> {
    return this.unary(this.raw.Stats, {}, KV_STORE_DEADLINES.control);
  }
  health(deadlineMs: number = KV_STORE_DEADLINES.control): Promise<W.StoreHealthResponseMsg> {
    return this.unary(this.raw.Health, {}, deadlineMs);
  }

  /**
   * The whole two-phase put: reserve, send the blocks the store lacks through the transfer engine (the
   * store's gRPC server hosts its receiver), commit. Any failure revokes the put, so nothing half-written
   * ever becomes readable.
   */
  async put(sender: TransferSender, modelId: string, blocks: readonly KvBlock[], opts: PutOptions = {}): Promise<PutReceipt> {
    const begun = await this.beginPut({ model_id: modelId, blocks: blocks.map((b) => ({ hash: b.hash, size: b.data.byteLength })), ttl_ms: opts.ttlMs ?? 0 }, opts.signal);
    try {
      const held = new Set(begun.already_stored);
      // Each block's CRC-32 follows from its header without a pass over it; the store verifies it in transit.
      const toSend = blocks.filter((b) => !held.has(b.hash)).map((b) => (b.checksum === undefined ? { ...b, checksum: blockCrc32(b.data) } : b));
      let bytes = 0;
      let transport: TransportKind | undefined;
      if (toSend.length > 0) {
        const receipt = await sender.send({
          peer: { grpcAddress: this.address },
          blocks: toSend,
          meta: { put_id: begun.put_id },
          transport: opts.transport ?? 'auto',
          signal: opts.signal,
          deadlineMs: opts.deadlineMs ?? KV_STORE_DEADLINES.get,
        });
        bytes = receipt.bytes;
        transport = receipt.transport;
      }
      const done = await this.commitPut(begun.put_id);
      return { stored: done.stored, alreadyStored: done.already_stored, bytes, transport };
    } catch (err) {
      await this.revokePut(begun.put_id).catch(() => undefined);
      throw err;
    }
  }

  close(): void {
    this.raw.close();
  }

  private unary<Req, Res>(fn: UnaryMethod<Req, Res>, req: Req, deadlineMs: number, signal?: AbortSignal): Promise<Res> {
    return callUnary(this.raw, fn, req, deadlineMs, toStoreCallError, signal);
  }
}
