// What the event bus needs from a message system: subject publish/subscribe and a connection status.

export type ConnectionStatus = 'connected' | 'disconnected' | 'closed';

export interface SubjectTransport {
  readonly status: ConnectionStatus;
  onStatus(listener: (status: ConnectionStatus) => void): () => void;
  /** Fire and forget; must not throw for connection problems (the bus only calls it while connected). */
  publish(subject: string, payload: Uint8Array): void;
  /** `pattern` may use NATS wildcards. Delivery is always asynchronous, in publish order per publisher. */
  subscribe(pattern: string, deliver: (subject: string, payload: Uint8Array) => void): () => void;
  /** Resolves when everything published (and every subscription made) so far has reached the server. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
