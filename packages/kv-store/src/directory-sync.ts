// Keeps a BlockDirectory in step with one store node: every stored/removed event becomes a record (with the
// block's best tier at that moment) or a forget, applied in event order.
import { silentLogger, type Logger } from '@pdserve/control-plane';
import type { BlockDirectory, DirectoryEntry } from './directory';
import type { BlockHash } from './keys';
import { Mutex } from './mutex';
import type { KvStore } from './store';
import type { KvStoreEvent, StoreTier } from './types';

/** Hashes per exists() call: below any sensible maxBatchBlocks (one disk write can evict many blocks). */
const EXISTS_CHUNK = 512;

export interface DirectoryMirror {
  /** Resolves when every update so far has reached the directory. */
  flushed(): Promise<void>;
  stop(): void;
}

export function mirrorToDirectory(store: KvStore, directory: BlockDirectory, node: string, logger: Logger = silentLogger): DirectoryMirror {
  const queue = new Mutex();
  /** The last update handed to setImmediate (they run in order): queued once it has. */
  let scheduled: Promise<void> = Promise.resolve();
  const apply = (event: KvStoreEvent): void => {
    // Read the tiers now, synchronously, so that the update describes the store as of this event. Blocks
    // just stored in memory are there, the best tier: nothing to read (a put's commit is a thousand blocks).
    const tiers: (StoreTier | undefined)[] = event.kind === 'stored' && event.tier === 'memory' ? event.hashes.map(() => 'memory') : [];
    for (let i = tiers.length; i < event.hashes.length; i += EXISTS_CHUNK)
      tiers.push(...store.exists(event.modelId, event.hashes.slice(i, i + EXISTS_CHUNK)));
    const held: DirectoryEntry[] = [];
    const gone: BlockHash[] = [];
    event.hashes.forEach((hash, i) => {
      const tier = tiers[i];
      if (tier === undefined) gone.push(hash);
      else held.push({ hash, tier });
    });
    // Written once the operation that caused the event has answered (a put's commit is acknowledged
    // first, not after the directory's bookkeeping).
    scheduled = new Promise<void>((resolve) =>
      setImmediate(() => {
        void queue
          .run(async () => {
            if (held.length > 0) await directory.record(node, event.modelId, held);
            if (gone.length > 0) await directory.forget(node, event.modelId, gone);
          })
          .catch((error: unknown) => logger.warn({ node, err: String(error) }, 'kv-store: block directory update failed'));
        resolve();
      }),
    );
  };
  const unsubscribe = store.onEvent(apply);
  return {
    flushed: async () => {
      await scheduled;
      await queue.idle();
    },
    stop: unsubscribe,
  };
}
