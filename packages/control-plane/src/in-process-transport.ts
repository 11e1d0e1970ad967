// Subjects in one process: a broker that several participants share, delivering on a later turn of the
// event loop (like a network round trip would) and in publish order.
import { subjectMatches } from './names';
import type { ConnectionStatus, SubjectTransport } from './transport';

interface BrokerSubscription {
  readonly pattern: string;
  readonly deliver: (subject: string, payload: Uint8Array) => void;
  active: boolean;
}

export class InProcessBroker {
  private readonly subscriptions = new Set<BrokerSubscription>();

  publish(subject: string, payload: Uint8Array): void {
    const targets = [...this.subscriptions].filter((s) => subjectMatches(s.pattern, subject));
    if (targets.length === 0) return;
    setImmediate(() => {
      for (const target of targets) if (target.active) target.deliver(subject, payload);
    });
  }

  subscribe(pattern: string, deliver: (subject: string, payload: Uint8Array) => void): () => void {
    const subscription: BrokerSubscription = { pattern, deliver, active: true };
    this.subscriptions.add(subscription);
    return () => {
      subscription.active = false;
      this.subscriptions.delete(subscription);
    };
  }
}

/** One participant's connection to the broker; always connected until closed. */
export class InProcessTransport implements SubjectTransport {
  private readonly unsubscribers = new Set<() => void>();
  private readonly listeners = new Set<(status: ConnectionStatus) => void>();
  status: ConnectionStatus = 'connected';

  constructor(private readonly broker: InProcessBroker) {}

  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  publish(subject: string, payload: Uint8Array): void {
    if (this.status === 'connected') this.broker.publish(subject, payload);
  }

  subscribe(pattern: string, deliver: (subject: string, payload: Uint8Array) => void): () => void {
    const unsubscribe = this.broker.subscribe(pattern, deliver);
    this.unsubscribers.add(unsubscribe);
    return () => {
      this.unsubscribers.delete(unsubscribe);
      unsubscribe();
    };
  }

  /** Deliveries scheduled before this call have run when it resolves. */
  flush(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  async close(): Promise<void> {
    if (this.status === 'closed') return;
    for (const unsubscribe of this.unsubscribers) unsubscribe();
    this.unsubscribers.clear();
    this.status = 'closed';
    for (const listener of [...this.listeners]) listener('closed');
    this.listeners.clear();
  }
}
