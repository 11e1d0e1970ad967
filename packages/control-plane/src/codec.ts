// The one wire codec for control messages: JSON with a version field, validated field by field on decode.
import { isBlockHash } from '@pdserve/contracts';
import {
  KV_TIERS,
  SERVICE_ROLES,
  type KvEvent,
  type KvEventBatch,
  type KvTier,
  type LoadReport,
  type ServiceCapacity,
  type ServiceRecord,
  type ServiceRole,
} from './types';

/** Bumped when the wire shape changes incompatibly; decoders reject other versions. */
export const WIRE_VERSION = 1;

export class CodecError extends Error {
  override readonly name = 'CodecError';
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeKvBatch(batch: KvEventBatch): Uint8Array {
  return encoder.encode(JSON.stringify({ v: WIRE_VERSION, ...batch }));
}

export function decodeKvBatch(bytes: Uint8Array): KvEventBatch {
  const o = parseVersioned(bytes, 'KV event batch');
  const events = field(o, 'events');
  if (!Array.isArray(events)) throw new CodecError('KV event batch: events must be an array');
  return {
    worker: str(o, 'worker'),
    incarnation: str(o, 'incarnation'),
    seq: count(o, 'seq'),
    events: events.map(decodeKvEvent),
  };
}

export function encodeLoadReport(report: LoadReport): Uint8Array {
  return encoder.encode(JSON.stringify({ v: WIRE_VERSION, ...report }));
}

export function decodeLoadReport(bytes: Uint8Array): LoadReport {
  const o = parseVersioned(bytes, 'load report');
  return {
    worker: str(o, 'worker'),
    running: count(o, 'running'),
    waiting: count(o, 'waiting'),
    freeBlocks: count(o, 'freeBlocks'),
    totalBlocks: count(o, 'totalBlocks'),
    queuedPrefillTokens: count(o, 'queuedPrefillTokens'),
    ts: finite(o, 'ts'),
  };
}

/** Service records are stored as JSON strings in Redis (and in the in-process store). */
export function encodeServiceRecord(record: ServiceRecord): string {
  return JSON.stringify({ v: WIRE_VERSION, ...record });
}

export function decodeServiceRecord(text: string): ServiceRecord {
  const o = parseVersioned(encoder.encode(text), 'service record');
  const role = str(o, 'role');
  if (!SERVICE_ROLES.includes(role as ServiceRole)) throw new CodecError(`service record: unknown role ${role}`);
  const capacity = obj(field(o, 'capacity'), 'service record capacity');
  const decoded: ServiceCapacity = {
    totalBlocks: count(capacity, 'totalBlocks'),
    blockSize: count(capacity, 'blockSize'),
    maxNumSeqs: count(capacity, 'maxNumSeqs'),
  };
  const base = {
    id: str(o, 'id'),
    role: role as ServiceRole,
    grpcAddress: str(o, 'grpcAddress'),
    adminAddress: str(o, 'adminAddress'),
    model: str(o, 'model'),
    capacity: decoded,
    incarnation: str(o, 'incarnation'),
    startedAt: finite(o, 'startedAt'),
  };
  const withData = typeof o['dataAddress'] === 'string' ? { ...base, dataAddress: o['dataAddress'] } : base;
  const withFeatures = 'features' in o ? { ...withData, features: features(o['features']) } : withData;
  return 'transfer' in o ? { ...withFeatures, transfer: o['transfer'] } : withFeatures;
}

/** A record's feature names: kept as they are (a newer instance may list ones this release does not know), bounded. */
function features(value: unknown): string[] {
  if (!Array.isArray(value) || value.length > MAX_FEATURES || !value.every((f) => typeof f === 'string' && f.length <= MAX_FEATURE_NAME)) {
    throw new CodecError(`service record: features must be at most ${MAX_FEATURES} names of at most ${MAX_FEATURE_NAME} characters`);
  }
  return value;
}

const MAX_FEATURES = 64;
const MAX_FEATURE_NAME = 64;

function decodeKvEvent(value: unknown): KvEvent {
  const o = obj(value, 'KV event');
  const kind = str(o, 'kind');
  if (kind === 'cleared') return { kind };
  if (kind !== 'stored' && kind !== 'removed') throw new CodecError(`KV event: unknown kind ${kind}`);
  const tier = str(o, 'tier');
  if (!KV_TIERS.includes(tier as KvTier)) throw new CodecError(`KV event: unknown tier ${tier}`);
  const hashes = field(o, 'hashes');
  if (!Array.isArray(hashes) || !hashes.every(isBlockHash)) {
    throw new CodecError('KV event: hashes must be an array of 16-hex-char strings');
  }
  return { kind, tier: tier as KvTier, hashes };
}

type Fields = Readonly<Record<string, unknown>>;

function parseVersioned(bytes: Uint8Array, what: string): Fields {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch (error) {
    throw new CodecError(`${what}: not valid UTF-8 JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const o = obj(value, what);
  if (o['v'] !== WIRE_VERSION) throw new CodecError(`${what}: unsupported wire version ${String(o['v'])}`);
  return o;
}

function obj(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CodecError(`${what} must be an object`);
  }
  return value as Fields;
}

function field(o: Fields, name: string): unknown {
  if (!(name in o)) throw new CodecError(`missing field ${name}`);
  return o[name];
}

function str(o: Fields, name: string): string {
  const value = field(o, name);
  if (typeof value !== 'string') throw new CodecError(`field ${name} must be a string`);
  return value;
}

function finite(o: Fields, name: string): number {
  const value = field(o, name);
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new CodecError(`field ${name} must be a number`);
  return value;
}

function count(o: Fields, name: string): number {
  const value = finite(o, name);
  if (!Number.isSafeInteger(value) || value < 0) throw new CodecError(`field ${name} must be a non-negative integer`);
  return value;
}
