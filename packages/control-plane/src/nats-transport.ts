// SubjectTransport over NATS: reconnects forever, resubscribes (the client does), exposes its status.
import { connect, DebugEvents, Events, type NatsConnection, type Subscription } from 'nats';
import { errorMessage, redactUrl, type Logger } from './log';
import type { ConnectionStatus, SubjectTransport } from './transport';

export interface NatsTransportOptions {
  /** How long connect() waits for the first connection before failing, in ms. */
  readonly connectTimeoutMs?: number;
  /** Wait between reconnect attempts, in ms (plus up to 100 ms jitter). */
  readonly reconnectWaitMs?: number;
  /** Client ping interval; a connection that misses maxPingOut pings is treated as lost, in ms. */
  readonly pingIntervalMs?: number;
  readonly maxPingOut?: number;
  /** Client name shown by the server's monitoring. */
  readonly name?: string;
}

export const NATS_DEFAULTS = {
  connectTimeoutMs: 5_000,
  reconnectWaitMs: 1_000,
  pingIntervalMs: 10_000,
  maxPingOut: 2,
} as const;

export class NatsTransport implements SubjectTransport {
  private readonly listeners = new Set<(status: ConnectionStatus) => void>();
  status: ConnectionStatus = 'connected';

  private constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
    private readonly where: string,
  ) {
    this.followStatus().catch((error: unknown) => logger.error({ nats: where, err: errorMessage(error) }, 'nats status stream failed'));
    void nc.closed().then((error) => {
      if (error) logger.error({ nats: where, err: errorMessage(error) }, 'nats connection closed with an error');
      this.setStatus('closed');
    });
  }

  static async connect(url: string, logger: Logger, options: NatsTransportOptions = {}): Promise<NatsTransport> {
    const o = { ...NATS_DEFAULTS, ...options };
    const where = redactUrl(url);
    try {
      const nc = await connect({
        ...natsConnectTarget(url),
        name: o.name,
        timeout: o.connectTimeoutMs,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: o.reconnectWaitMs,
        pingInterval: o.pingIntervalMs,
        maxPingOut: o.maxPingOut,
      });
      return new NatsTransport(nc, logger, where);
    } catch (error) {
      throw new Error(`cannot connect to NATS at ${where}: ${errorMessage(error)}`);
    }
  }

  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish(subject: string, payload: Uint8Array): void {
    this.nc.publish(subject, payload);
  }

  subscribe(pattern: string, deliver: (subject: string, payload: Uint8Array) => void): () => void {
    const subscription: Subscription = this.nc.subscribe(pattern, {
      callback: (error, message) => {
        if (error) this.logger.warn({ subject: pattern, err: errorMessage(error) }, 'nats subscription error');
        else deliver(message.subject, message.data);
      },
    });
    return () => {
      if (!this.nc.isClosed()) subscription.unsubscribe();
    };
  }

  async flush(): Promise<void> {
    if (this.status === 'connected') await this.nc.flush();
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      await this.nc.close();
    } catch (error) {
      this.logger.warn({ nats: this.where, err: errorMessage(error) }, 'nats close failed');
    }
  }

  private async followStatus(): Promise<void> {
    for await (const event of this.nc.status()) {
      if (event.type === Events.Disconnect || event.type === DebugEvents.StaleConnection) {
        if (this.status === 'connected') this.logger.warn({ nats: this.where }, 'nats disconnected; reconnecting');
        this.setStatus('disconnected');
      } else if (event.type === Events.Reconnect) {
        this.logger.info({ nats: this.where }, 'nats reconnected');
        this.setStatus('connected');
      } else if (event.type === Events.Error) {
        this.logger.warn({ nats: this.where, err: String(event.data) }, 'nats async error');
      }
    }
  }

  private setStatus(status: ConnectionStatus): void {
    if (this.status === status || this.status === 'closed') return;
    this.status = status;
    for (const listener of [...this.listeners]) {
      try {
        listener(status);
      } catch (error) {
        this.logger.error({ err: errorMessage(error) }, 'status listener threw');
      }
    }
  }
}

/**
 * The server and credentials a NATS URL names, as the nats client wants them (it ignores a URL's userinfo):
 * nats://user:password@host:4222 or nats://token@host:4222; tls://host:4222 requires TLS (the server's
 * certificate checked against the system CAs and NODE_EXTRA_CA_CERTS).
 */
export function natsConnectTarget(url: string): {
  servers: string;
  user?: string;
  pass?: string;
  token?: string;
  tls?: Record<string, never>;
} {
  const u = new URL(url);
  const tls = u.protocol === 'tls:';
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  const servers = `nats://${u.host}`;
  const auth = user === '' ? {} : pass === '' ? { token: user } : { user, pass };
  return { servers, ...auth, ...(tls ? { tls: {} } : {}) };
}
