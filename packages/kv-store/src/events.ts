// The onEvent hook: one event per (kind, tier, model) per operation, never an empty one.
import type { Logger } from '@pdserve/control-plane';
import type { BlockHash } from './keys';
import type { KvStoreEvent, StoreTier } from './types';

export type KvStoreListener = (event: KvStoreEvent) => void;

export interface BlockRef {
  readonly modelId: string;
  readonly hash: BlockHash;
}

export class EventHub {
  private readonly listeners = new Set<KvStoreListener>();

  constructor(private readonly logger: Logger) {}

  on(listener: KvStoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(kind: KvStoreEvent['kind'], tier: StoreTier, blocks: readonly BlockRef[]): void {
    if (this.listeners.size === 0) return;
    for (const event of blockEvents(kind, tier, blocks)) {
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch (error) {
          // A listener's bug must not break the store operation that emitted the event.
          this.logger.error({ err: String(error), kind, tier }, 'kv-store: event listener threw');
        }
      }
    }
  }
}

/** One event per model for these blocks; none when there are no blocks. */
export function blockEvents(kind: KvStoreEvent['kind'], tier: StoreTier, blocks: readonly BlockRef[]): KvStoreEvent[] {
  const byModel = new Map<string, BlockHash[]>();
  for (const b of blocks) {
    const hashes = byModel.get(b.modelId);
    if (hashes === undefined) byModel.set(b.modelId, [b.hash]);
    else hashes.push(b.hash);
  }
  return [...byModel].map(([modelId, hashes]) => ({ kind, tier, modelId, hashes }));
}
