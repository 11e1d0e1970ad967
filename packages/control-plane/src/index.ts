// @pdserve/control-plane: the service registry and the KV/load event bus, over Redis and NATS or in process.
export type { KvEventBatch, ServiceFeature, ServiceRecord } from './types';
export { hasFeature, WORKER_FEATURES } from './types';

export { connectControlPlane, type ControlPlane, type ControlPlaneOptions } from './control-plane';
export { InProcessHub, processHub } from './hub';

export type { Registration } from './registration';
export type { Membership } from './membership';
export { RegisteredPeers, hostsOf } from './peers';
export { type RegistryOptions } from './registry-options';
export { type RedisLeaseStoreOptions } from './redis-lease-store';

export { type EventBusOptions, type SubscribeOptions } from './event-bus';
export { type NatsTransportOptions } from './nats-transport';
export { KvEventPublisher, type KvEventPublisherOptions } from './kv-event-publisher';

export { instanceKey, isToken } from './names';
export { silentLogger, type Logger } from './log';
