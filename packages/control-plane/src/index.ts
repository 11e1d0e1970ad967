// @pdserve/control-plane: the service registry and the KV/load event bus, over Redis and NATS or in process.
export type {
  BlockHash,
  KvEvent,
  KvEventBatch,
  KvTier,
  LoadReport,
  ServiceCapacity,
  ServiceRecord,
  ServiceRole,
} from './types.js';
export { KV_TIERS, SERVICE_ROLES } from './types.js';

export { connectControlPlane, type ControlPlane, type ControlPlaneOptions } from './control-plane.js';
export { InProcessHub, processHub } from './hub.js';

export type { Registry } from './registry.js';
export { LeaseRegistry } from './registry.js';
export type { Registration } from './registration.js';
export type { Membership, MembershipChange } from './membership.js';
export { RegisteredPeers, hostOf } from './peers.js';
export { DEFAULT_LEASE_TTL_MS, type RegistryOptions } from './registry-options.js';
export type { LeaseStore, PutMode } from './lease-store.js';
export { MemoryLeaseStore } from './lease-store.js';
export { RedisLeaseStore, REDIS_DEFAULTS, type RedisLeaseStoreOptions } from './redis-lease-store.js';

export {
  EVENT_BUS_DEFAULTS,
  TransportEventBus,
  type EventBus,
  type EventBusOptions,
  type EventBusStats,
  type EventSubscription,
  type Handler,
  type SubscribeOptions,
} from './event-bus.js';
export type { ConnectionStatus, SubjectTransport } from './transport.js';
export { NatsTransport, NATS_DEFAULTS, type NatsTransportOptions } from './nats-transport.js';
export { InProcessBroker, InProcessTransport } from './in-process-transport.js';
export {
  KV_PUBLISHER_DEFAULTS,
  KvEventPublisher,
  type KvBatchSink,
  type KvEventPublisherOptions,
} from './kv-event-publisher.js';

export {
  CodecError,
  WIRE_VERSION,
  decodeKvBatch,
  decodeLoadReport,
  decodeServiceRecord,
  encodeKvBatch,
  encodeLoadReport,
  encodeServiceRecord,
  isBlockHash,
} from './codec.js';
export { instanceKey, isToken, kvSubject, loadSubject } from './names.js';
export { jsonLogger, silentLogger, type LogFields, type Logger } from './log.js';
