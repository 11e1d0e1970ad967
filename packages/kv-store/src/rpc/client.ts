// A typed client of one kv-store node, with a deadline on every call; `put` runs a whole two-phase put in
// one transfer (begun by its Begin, committed by its admission; revoked on any failure), and beginPut,
// commitPut and revokePut run one explicitly.
import { makeGenericClientConstructor, type ChannelCredentials, type Client } from '@grpc/grpc-js';
import { blockCrc32 } from '@pdserve/kv-cache';
import { callFailure, callUnary, channelCredentials, tlsChannelOptions, type TlsMaterial, type UnaryMethod } from '@pdserve/rpc';
import { randomBytes } from 'node:crypto';
import {
  PULL_TOKEN_BYTES,
  packHashes,
  type KvBlock,
  type PreparedPull,
  type PullOffer,
  type TransferSender,
  type TransportKind,
} from '@pdserve/transfer';
import { GRPC_STATUS } from '../errors';
import { isBlockHash } from '../keys';
import { KV_STORE_DEADLINES, KV_STORE_GRPC_OPTIONS, PUT_BEGIN_META, PUT_COMMIT_META, PUT_TTL_META, kvStoreService } from './proto';
import * as W from './wire';

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

type Ctor = new (address: string, creds: ChannelCredentials, opts: object) => RawKvStoreClient;
let ctor: Ctor | undefined;

export function toStoreCallError(err: unknown): KvStoreCallError {
  if (err instanceof KvStoreCallError) return err;
  const { code, message } = callFailure(err);
  return new KvStoreCallError(code, message);
}

export interface PutOptions {
  readonly ttlMs?: number;
  readonly transport?: 'auto' | TransportKind;
  readonly signal?: AbortSignal;
  readonly deadlineMs?: number;
}

export interface PutReceipt {
  /** The blocks now stored: every one of the put's (written now, or held already). */
  readonly stored: readonly string[];
  /** Bytes that travelled. */
  readonly bytes: number;
  readonly transport: TransportKind | undefined;
}

/** A Get as callers write it: the hashes as text. */
export type GetRequest = Omit<W.GetRequestMsg, 'hashes'> & { readonly hashes: readonly string[] };
/** Get's answer, the tiers as text: per requested hash 'memory', 'disk' or '' (missing or corrupt). */
export type GetReply = Omit<W.GetResponseMsg, 'tiers'> & { readonly tiers: readonly string[] };

export class KvStoreClient {
  private readonly raw: RawKvStoreClient;

  /** `tls`: mTLS with the cluster's certificates (plaintext without). */
  constructor(
    readonly address: string,
    tls?: TlsMaterial,
  ) {
    ctor ??= makeGenericClientConstructor(kvStoreService(), 'KvStore') as unknown as Ctor;
    this.raw = new ctor(address, channelCredentials(tls), { ...KV_STORE_GRPC_OPTIONS, ...tlsChannelOptions(tls) });
  }

  /** Phase one of a put: reserves room for the blocks the store does not hold yet. */
  beginPut(
    modelId: string,
    blocks: readonly { readonly hash: string; readonly size: number }[],
    ttlMs = 0,
    signal?: AbortSignal,
  ): Promise<W.BeginPutResponseMsg> {
    const bad = badHash(blocks.map((b) => b.hash));
    if (bad !== undefined) return Promise.reject(bad);
    const req: W.BeginPutRequestMsg = {
      model_id: modelId,
      ttl_ms: ttlMs,
      hashes: packHashes(blocks.map((b) => b.hash)),
      sizes: blocks.map((b) => b.size),
    };
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
    const bad = badHash(req.hashes);
    if (bad !== undefined) throw bad;
    const res = await this.unary(this.raw.Get, { ...req, hashes: packHashes(req.hashes) }, KV_STORE_DEADLINES.get, signal);
    return { ...res, tiers: [...res.tiers].map((c) => W.TIER_CODES[c] ?? '') };
  }
  /**
   * A get the caller pulls itself (Get with sink.pull): the store answers at once with an offer at its data
   * port, and `receiver` pulls it over tcp like any transfer (limits, per-block checks, its onTransfer), its
   * word on the data connection ending the store's read lease. No Transfer call, no Begin, Ready or gRPC
   * Admitted: two gRPC messages per get instead of five. With `source`, the store's data port (from its
   * registry record), the pull is pipelined: the receiver asks the data port for the blocks, under a token
   * of its own named in the Get, as the Get leaves, and the store lists them and sends them there as soon as
   * it has offered them, while its reply (then only checked against the list) is on its way. Resolves with the reply once the blocks are admitted (at once when none
   * is held). A block that fails its check rejects with the transfer's CHECKSUM_MISMATCH: get again with
   * `verify`, and the store drops what is corrupt and reports it missing.
   */
  async pull(receiver: PullingReceiver, req: GetRequest, opts: { signal?: AbortSignal; source?: string } = {}): Promise<GetReply> {
    const sink = req.sink;
    if (sink === null) throw new KvStoreCallError('INVALID_ARGUMENT', 'get needs a sink (the worker pulling the blocks)');
    const token = opts.source !== undefined && receiver.prepare !== undefined ? randomBytes(PULL_TOKEN_BYTES) : undefined;
    // Refused (say, a data port it does not know), the pull is only not pipelined: it is asked for after the reply.
    const preparing = token === undefined ? undefined : receiver.prepare!(opts.source!, token, { listed: true }).catch(() => undefined);
    const pullOf = (source: string, token: Uint8Array, blocks: readonly { hash: string; length: number }[], prepared?: PreparedPull) =>
      receiver.pull({
        transferId: sink.transfer_id,
        source,
        token,
        blocks,
        deadlineMs: KV_STORE_DEADLINES.get,
        signal: opts.signal,
        prepared,
      });
    // Listed, the store names the blocks on the data connection as it offers them, ahead of its reply: the pull begins there.
    const early = preparing?.then((p) =>
      p?.list === undefined ? undefined : p.list.then(async (blocks) => (await pullOf(p.source, p.token, blocks, p), blocks)),
    );
    early?.catch(() => undefined); // the reply says why, or the awaits below do
    let handedOver = false;
    try {
      const reply = await this.get({ ...req, sink: { ...sink, pull: true, pull_token: token } }, opts.signal);
      if (reply.blocks === 0) return reply;
      const found = req.hashes.filter((_, i) => reply.tiers[i] !== '');
      if (found.length !== reply.block_lengths.length || reply.tcp_source === '') {
        throw new KvStoreCallError('INTERNAL', `the store offered ${reply.block_lengths.length} blocks for ${found.length} found`);
      }
      handedOver = true; // the pull takes the prepared connection over (and lets it go if it does not pull)
      const listed = await early;
      if (listed === undefined) {
        await pullOf(
          reply.tcp_source,
          reply.tcp_token,
          found.map((hash, i) => ({ hash, length: reply.block_lengths[i]! })),
          await preparing,
        );
      } else if (listed.length !== found.length || listed.some((b, i) => b.hash !== found[i] || b.length !== reply.block_lengths[i])) {
        throw new KvStoreCallError('INTERNAL', 'the blocks the store listed on its data connection are not those its reply names');
      }
      return reply;
    } finally {
      // Nothing to pull (none held, or the Get failed): the connection that asked is let go.
      if (!handedOver) {
        const prepared = await preparing;
        if (prepared !== undefined) receiver.cancel?.(prepared);
      }
    }
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
   * A whole two-phase put in one round trip: the blocks go through the transfer engine (the store's gRPC
   * server hosts its receiver) with meta that makes the transfer's Begin begin the put — reserving room,
   * the bytes then landing in the buffers the store keeps — and its admission, every block in and
   * verified, commit it. A failure anywhere revokes the put: nothing half-written ever becomes readable.
   * Blocks the store already holds travel too (it keeps its copy); beginPut first says which those are.
   */
  async put(sender: TransferSender, modelId: string, blocks: readonly KvBlock[], opts: PutOptions = {}): Promise<PutReceipt> {
    const bad = badHash(blocks.map((b) => b.hash));
    if (bad !== undefined) throw bad;
    if (blocks.length === 0) return { stored: [], bytes: 0, transport: undefined };
    // Each block's CRC-32 follows from its header without a pass over it; the store verifies it in transit.
    const toSend = blocks.map((b) => (b.checksum === undefined ? { hash: b.hash, data: b.data, checksum: blockCrc32(b.data) } : b));
    const meta: Record<string, string> = { [PUT_BEGIN_META]: modelId, [PUT_COMMIT_META]: '1' };
    if (opts.ttlMs !== undefined) meta[PUT_TTL_META] = String(opts.ttlMs);
    try {
      const receipt = await sender.send({
        peer: { grpcAddress: this.address },
        blocks: toSend,
        meta,
        transport: opts.transport ?? 'auto',
        signal: opts.signal,
        deadlineMs: opts.deadlineMs ?? KV_STORE_DEADLINES.get,
      });
      return { stored: blocks.map((b) => b.hash), bytes: receipt.bytes, transport: receipt.transport };
    } catch (err) {
      // The store's refusal (bad block, no room, wrong model) comes back as the transfer's REFUSED, its
      // message starting with the store's code.
      const e = err as { code?: unknown; message?: string };
      const m = STORE_REFUSAL.exec(e.message ?? '');
      if (e.code === 'REFUSED' && m !== null) throw new KvStoreCallError(m[1]!.toUpperCase(), (e.message ?? '').slice(m[0].length));
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

/** What KvStoreClient.pull pulls with: a transfer receiver (TransferReceiver), pipelining when it can prepare. */
export interface PullingReceiver {
  pull(offer: PullOffer): Promise<void>;
  prepare?(source: string, token: Uint8Array, opts: { listed?: boolean }): Promise<PreparedPull>;
  cancel?(prepared: PreparedPull): void;
}

/** A transfer refusal that carries the store's own code (see withCode in server.ts): `receiver: <code>: ...`. */
const STORE_REFUSAL = new RegExp(`^(?:receiver: )?(${Object.keys(GRPC_STATUS).join('|')}): `);

/** The error for the first hash that is not a block hash, if any. */
function badHash(hashes: readonly string[]): KvStoreCallError | undefined {
  const bad = hashes.find((h) => !isBlockHash(h));
  return bad === undefined
    ? undefined
    : new KvStoreCallError('INVALID_ARGUMENT', `block hash must be 16 lowercase hex characters, got ${JSON.stringify(bad)}`);
}
