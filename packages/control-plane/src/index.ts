// @pdserve/control-plane: the service registry and the KV/load event bus, over Redis and NATS or in process.
export type { KvEventBatch, ServiceRecord } from './types.js';

export { connectControlPlane, type ControlPlane, type ControlPlaneOptions } from './control-plane.js';
export { InProcessHub, processHub } from './hub.js';

export type { Registration } from './registration.js';
export type { Membership } from './membership.js';
export { RegisteredPeers } from './peers.js';
export { type RegistryOptions } from './registry-options.js';
export { type RedisLeaseStoreOptions } from './redis-lease-store.js';

export { type EventBusOptions, type SubscribeOptions } from './event-bus.js';
export { type NatsTransportOptions } from './nats-transport.js';
export { KvEventPublisher, type KvEventPublisherOptions } from './kv-event-publisher.js';

export { instanceKey, isToken } from './names.js';
export { silentLogger, type Logger } from './log.js';
