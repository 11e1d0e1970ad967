import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceKey } from '@pdserve/control-plane';
import { startRedis, type TestServer } from '../../testkit/src/servers';
import { InProcessBlockDirectory, type BlockDirectory, type NodeLiveness } from './directory';
import { mirrorToDirectory } from './directory-sync';
import { KvStoreError } from './errors';
import { RedisBlockDirectory, registryLiveness } from './redis-directory';
import { KvStore } from './store';
import { BLOCK, MODEL, hashOf, putBlocks } from './test-helpers';

/** Liveness the tests control: every node is alive unless marked dead. */
function controlledLiveness(): NodeLiveness & { dead: Set<string> } {
  const dead = new Set<string>();
  return { dead, live: async (nodes) => new Set(nodes.filter((n) => !dead.has(n))) };
}

type Make = (liveness: NodeLiveness) => Promise<BlockDirectory>;

function directorySuite(name: string, make: () => Make): void {
  describe(`BlockDirectory (${name})`, () => {
    const [h1, h2, h3] = [hashOf(1), hashOf(2), hashOf(3)];

    it('records, locates (memory first) and updates tiers', async () => {
      const dir = await make()(controlledLiveness());
      await dir.record('node-b', MODEL, [{ hash: h1, tier: 'memory' }]);
      await dir.record('node-a', MODEL, [
        { hash: h1, tier: 'disk' },
        { hash: h2, tier: 'disk' },
      ]);
      await dir.record('node-c', MODEL, [{ hash: h1, tier: 'memory' }]);
      await dir.record('node-c', 'other-model', [{ hash: h3, tier: 'memory' }]);
      expect(await dir.locate(MODEL, [h1, h2, h3])).toEqual([
        [
          { node: 'node-b', tier: 'memory' },
          { node: 'node-c', tier: 'memory' },
          { node: 'node-a', tier: 'disk' },
        ],
        [{ node: 'node-a', tier: 'disk' }],
        [],
      ]);
      await dir.record('node-a', MODEL, [{ hash: h2, tier: 'memory' }]);
      expect(await dir.locate(MODEL, [h2])).toEqual([[{ node: 'node-a', tier: 'memory' }]]);
      expect(await dir.locate('other-model', [h3])).toEqual([[{ node: 'node-c', tier: 'memory' }]]);
      expect(await dir.locate(MODEL, [])).toEqual([]);
      await dir.close();
    });

    it('forgets per node and drops a whole node', async () => {
      const dir = await make()(controlledLiveness());
      await dir.record('node-a', MODEL, [
        { hash: h1, tier: 'memory' },
        { hash: h2, tier: 'disk' },
      ]);
      await dir.record('node-a', 'other-model', [{ hash: h1, tier: 'memory' }]);
      await dir.record('node-b', MODEL, [{ hash: h1, tier: 'disk' }]);
      await dir.forget('node-b', MODEL, [h1, h3]);
      expect(await dir.locate(MODEL, [h1])).toEqual([[{ node: 'node-a', tier: 'memory' }]]);
      await dir.record('node-b', MODEL, [{ hash: h2, tier: 'memory' }]);
      await dir.dropNode('node-a');
      expect(await dir.locate(MODEL, [h1, h2])).toEqual([[], [{ node: 'node-b', tier: 'memory' }]]);
      expect(await dir.locate('other-model', [h1])).toEqual([[]]);
      await dir.dropNode('node-never-seen');
      await dir.close();
    });

    it('leaves a dead node out of answers and deletes its entries', async () => {
      const liveness = controlledLiveness();
      const dir = await make()(liveness);
      await dir.record('node-a', MODEL, [{ hash: h1, tier: 'memory' }]);
      await dir.record('node-b', MODEL, [{ hash: h1, tier: 'memory' }]);
      liveness.dead.add('node-b');
      expect(await dir.locate(MODEL, [h1])).toEqual([[{ node: 'node-a', tier: 'memory' }]]);
      liveness.dead.delete('node-b'); // back, as a new incarnation: its old entries must not come back
      expect(await dir.locate(MODEL, [h1])).toEqual([[{ node: 'node-a', tier: 'memory' }]]);
      await dir.close();
    });

    it('validates its arguments', async () => {
      const dir = await make()(controlledLiveness());
      const bad: (() => Promise<unknown>)[] = [
        () => dir.record('node a', MODEL, [{ hash: h1, tier: 'memory' }]),
        () => dir.record('node-a', MODEL, [{ hash: 'xyz', tier: 'memory' }]),
        () => dir.record('node-a', 'bad model', [{ hash: h1, tier: 'memory' }]),
        () => dir.locate(MODEL, ['XYZ']),
      ];
      for (const call of bad) await expect(call()).rejects.toMatchObject({ code: 'invalid_argument' });
      await expect(dir.record('node-a', MODEL, [{ hash: h1, tier: 'memory' }])).resolves.toBeUndefined();
      await dir.close();
    });

    it('mirrors a store node through its events', async () => {
      const dir = await make()(controlledLiveness());
      const store = await KvStore.open({ memoryBytes: 2 * BLOCK, highWatermark: 1, lowWatermark: 1 });
      const mirror = mirrorToDirectory(store, dir, 'store-1');
      await putBlocks(store, [1, 2]);
      await putBlocks(store, [3]); // evicts 1 (no disk tier: gone)
      await mirror.flushed();
      expect(await dir.locate(MODEL, [1, 2, 3].map(hashOf))).toEqual([
        [],
        [{ node: 'store-1', tier: 'memory' }],
        [{ node: 'store-1', tier: 'memory' }],
      ]);
      mirror.stop();
      await store.close();
      await dir.close();
    });
  });
}

directorySuite('in-process', () => async (liveness) => new InProcessBlockDirectory(liveness));

describe('on real Redis', () => {
  let redis: TestServer;
  let client: Redis;
  let cluster = 0;
  beforeAll(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
  });
  afterAll(async () => {
    await client?.quit();
    await redis?.stop();
  });

  // Each test gets its own cluster name, so tests share one server without seeing each other's keys.
  directorySuite('Redis', () => async (liveness) => RedisBlockDirectory.connect(redis.url, { cluster: `t${++cluster}`, liveness }));

  it('keeps one expiring hash per block and one set per node', async () => {
    const dir = new RedisBlockDirectory(client, { cluster: 'keys', entryTtlMs: 60_000, liveness: controlledLiveness() });
    await dir.record('node-a', 'org/model:v1', [{ hash: hashOf(1), tier: 'disk' }]);
    const key = `pdserve:keys:kvdir:org/model:v1:${hashOf(1)}`;
    expect(await client.hgetall(key)).toEqual({ 'node-a': 'disk' });
    expect(await client.pttl(key)).toBeGreaterThan(50_000);
    expect(await client.smembers('pdserve:keys:kvdir-node:node-a')).toEqual([`org/model:v1:${hashOf(1)}`]);
    await dir.dropNode('node-a');
    expect(await client.exists(key, 'pdserve:keys:kvdir-node:node-a')).toBe(0);
    await dir.close(); // does not own the client: it stays usable
    expect(await client.ping()).toBe('PONG');
  });

  it('by default, treats a node as alive while its service-registry record exists', async () => {
    const dir = new RedisBlockDirectory(client, { cluster: 'reg' });
    await client.set(instanceKey('reg', 'node-a'), '{}', 'PX', 10_000);
    await dir.record('node-a', MODEL, [{ hash: hashOf(1), tier: 'memory' }]);
    await dir.record('node-b', MODEL, [{ hash: hashOf(1), tier: 'memory' }]);
    expect(await dir.locate(MODEL, [hashOf(1)])).toEqual([[{ node: 'node-a', tier: 'memory' }]]);
    expect(await client.hkeys(`pdserve:reg:kvdir:${MODEL}:${hashOf(1)}`)).toEqual(['node-a']);
    expect([...(await registryLiveness(client, 'reg').live(['node-a', 'node-b']))]).toEqual(['node-a']);
  });

  it('fails to connect with a typed error', async () => {
    const err = await RedisBlockDirectory.connect('redis://127.0.0.1:1', { cluster: 'x', connectTimeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KvStoreError);
    expect(err).toMatchObject({ code: 'unavailable' });
  });
});
