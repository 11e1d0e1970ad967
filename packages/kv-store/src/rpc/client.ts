// A typed client of one kv-store node, with a deadline on every call; `put` runs the whole two-phase put
// (BeginPut, blocks through the transfer engine, committed as the store admits them — or CommitPut when
// there is nothing to send; RevokePut on failure).
import { credentials, makeGenericClientConstructor, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { blockCrc32 } from '@pdserve/kv-cache';
import { callUnary, type UnaryMethod } from '@pdserve/rpc';
import { packHashes, type KvBlock, type TransferSender, type TransportKind } from '@pdserve/transfer';
import { isBlockHash } from '../keys.js';
import { KV_STORE_DEADLINES, KV_STORE_GRPC_OPTIONS, PUT_COMMIT_META, PUT_ID_META, kvStoreService } from './proto.js';
import * as W from './wire.js';

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
  /** The blocks this put wrote (a block another put committed meanwhile counts here too: it is stored either way). */
  readonly stored: readonly string[];
  /** The blocks the store already held when the put began (not sent). */
  readonly alreadyStored: readonly string[];
  /** Bytes that travelled (blocks the store already held are not sent). */
  readonly bytes: number;
  readonly transport: TransportKind | undefined;
}

/** A Get as callers write it: the hashes as text. */
export type GetRequest = Omit<W.GetRequestMsg, 'hashes'> & { readonly hashes: readonly string[] };
/** Get's answer, the tiers as text: per requested hash 'memory', 'disk' or '' (missing or corrupt). */
export type GetReply = Omit<W.GetResponseMsg, 'tiers'> & { readonly tiers: readonly string[] };

export class KvStoreClient {
  private readonly raw: RawKvStoreClient;

  constructor(readonly address: string) {
    ctor ??= makeGenericClientConstructor(kvStoreService(), 'KvStore') as unknown as Ctor;
    this.raw = new ctor(address, credentials.createInsecure(), KV_STORE_GRPC_OPTIONS);
  }

  /** Phase one of a put: reserves room for the blocks the store does not hold yet. */
  beginPut(modelId: string, blocks: readonly { readonly hash: string; readonly size: number }[], ttlMs = 0, signal?: AbortSignal): Promise<W.BeginPutResponseMsg> {
    const bad = blocks.find((b) => !isBlockHash(b.hash));
    if (bad !== undefined) {
      return Promise.reject(new KvStoreCallError('INVALID_ARGUMENT', `block hash must be 16 lowercase hex characters, got ${JSON.stringify(bad.hash)}`));
    }
    const req: W.BeginPutRequestMsg = { model_id: modelId, ttl_ms: ttlMs, hashes: packHashes(blocks.map((b) => b.hash)), sizes: blocks.map((b) => b.size) };
    return this.unary(this.raw.BeginPut, req, KV_STORE_DEADLINES.control, signal);
  }
  commitPut(putId: string): Promise<W.CommitPutResponseMsg> {
    return this.unary(this.raw.CommitPut, { put_id: putId }, KV_STORE_DEADLINES.control);
  }
  revokePut(putId: string): Promise<W.RevokePutResponseMsg> {
    return this.unary(this.raw.RevokePut, { put_id: putId }, KV_STORE_DEADLINES.control);
  }
  /** The store sends what it finds to `req.sink` and answers once the sink admitted it. */
  async get(req: GetRequest, signal?: AbortSignal): Promise<GetReply> {
    const bad = req.hashes.find((h) => !isBlockHash(h));
    if (bad !== undefined) throw new KvStoreCallError('INVALID_ARGUMENT', `block hash must be 16 lowercase hex characters, got ${JSON.stringify(bad)}`);
    const res = await this.unary(this.raw.Get, { ...req, hashes: packHashes(req.hashes) }, KV_STORE_DEADLINES.get, signal);
    return { ...res, tiers: [...res.tiers].map((c) => W.TIER_CODES[c] ?? '') };
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
    const begun = await this.beginPut(modelId, blocks.map((b) => ({ hash: b.hash, size: b.data.byteLength })), opts.ttlMs ?? 0, opts.signal);
    try {
      const held = new Set(begun.already_stored);
      // Each block's CRC-32 follows from its header without a pass over it; the store verifies it in transit.
      const toSend = blocks.filter((b) => !held.has(b.hash)).map((b) => (b.checksum === undefined ? { ...b, checksum: blockCrc32(b.data) } : b));
      let bytes = 0;
      let transport: TransportKind | undefined;
      if (toSend.length > 0) {
        // The store commits the put as it admits the transfer (all blocks in, verified): no CommitPut round trip.
        const receipt = await sender.send({
          peer: { grpcAddress: this.address },
          blocks: toSend,
          meta: { [PUT_ID_META]: begun.put_id, [PUT_COMMIT_META]: '1' },
          transport: opts.transport ?? 'auto',
          signal: opts.signal,
          deadlineMs: opts.deadlineMs ?? KV_STORE_DEADLINES.get,
        });
        bytes = receipt.bytes;
        transport = receipt.transport;
        return { stored: toSend.map((b) => b.hash), alreadyStored: begun.already_stored, bytes, transport };
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
