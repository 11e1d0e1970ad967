// The factory services call: Redis and NATS when their URLs are given, the in-process hub otherwise.
import { TransportEventBus, type EventBus, type EventBusOptions } from './event-bus';
import { InProcessHub, processHub } from './hub';
import { InProcessTransport } from './in-process-transport';
import type { LeaseStore } from './lease-store';
import { createLogger } from '@pdserve/log';
import type { Logger } from './log';
import { assertToken } from './names';
import { NatsTransport, type NatsTransportOptions } from './nats-transport';
import { RedisLeaseStore, type RedisLeaseStoreOptions } from './redis-lease-store';
import { LeaseRegistry, type Registry } from './registry';
import type { RegistryOptions } from './registry-options';
import type { SubjectTransport } from './transport';

export interface ControlPlaneOptions {
  /** Names the cluster in every key and subject; [A-Za-z0-9_-]. */
  readonly cluster: string;
  /** e.g. `redis://10.0.0.5:6379`; the in-process registry when omitted. */
  readonly redisUrl?: string;
  /** e.g. `nats://10.0.0.6:4222`; the in-process bus when omitted. */
  readonly natsUrl?: string;
  /** Where in-process participants meet; the process-wide hub when omitted. */
  readonly hub?: InProcessHub;
  readonly logger?: Logger;
  readonly registry?: RegistryOptions;
  readonly redis?: RedisLeaseStoreOptions;
  readonly nats?: NatsTransportOptions;
  readonly events?: EventBusOptions;
}

export interface ControlPlane {
  readonly cluster: string;
  readonly mode: { readonly registry: 'redis' | 'in-process'; readonly events: 'nats' | 'in-process' };
  readonly registry: Registry;
  readonly events: EventBus;
  /** Closes the registry (heartbeats stop; deregister first to drain) and the event bus. */
  close(): Promise<void>;
}

export async function connectControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const { cluster, redisUrl, natsUrl } = options;
  assertToken(cluster, 'cluster');
  const logger = options.logger ?? createLogger().child({ component: 'control-plane' });
  const hub = options.hub ?? processHub;

  const store: LeaseStore = redisUrl ? await RedisLeaseStore.connect(redisUrl, logger, options.redis) : hub.store;
  let transport: SubjectTransport;
  try {
    transport = natsUrl ? await NatsTransport.connect(natsUrl, logger, options.nats) : new InProcessTransport(hub.broker);
  } catch (error) {
    await store.close();
    throw error;
  }
  const registry = new LeaseRegistry(cluster, store, logger, options.registry);
  const events = new TransportEventBus(cluster, transport, logger, options.events);
  return {
    cluster,
    mode: { registry: redisUrl ? 'redis' : 'in-process', events: natsUrl ? 'nats' : 'in-process' },
    registry,
    events,
    close: async () => {
      await Promise.all([registry.close(), events.close()]);
    },
  };
}
