// One behavioural suite, run against the Redis registry (real redis-server) and the in-process one.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedis, type TestServer } from '../../testkit/src/servers';
import { MemoryLeaseStore, type LeaseStore } from './lease-store';
import type { Logger } from './log';
import type { Membership, MembershipChange } from './membership';
import { instanceKey } from './names';
import { RedisLeaseStore } from './redis-lease-store';
import { LeaseRegistry, type Registry } from './registry';
import type { RegistryOptions } from './registry-options';
import { memoryLogger, sampleRecord, sleep, uniqueCluster, waitFor } from './test-helpers';

/** Short leases so expiry is testable: heartbeat and poll every 200 ms. */
const TTL_MS = 600;
const POLL_MS = 200;
const OPTIONS: RegistryOptions = { leaseTtlMs: TTL_MS };
/** Scheduling slack on a loaded 2-core machine, for the bounds the registry promises. */
const SLACK_MS = 400;
/** For waits that assert an outcome, not a deadline. */
const EVENTUALLY_MS = 3_000;

interface Harness {
  /** A new participant with its own connection. */
  store(logger: Logger): Promise<LeaseStore>;
  /** Loses all data and makes every participant reconnect (a Redis restart without persistence). */
  restart(): Promise<void>;
}

let redis: TestServer | undefined;
let memory = new MemoryLeaseStore();

const harnesses: [string, Harness][] = [
  [
    'redis',
    {
      store: (logger) => {
        if (redis === undefined) throw new Error('redis not started');
        return RedisLeaseStore.connect(redis.url, logger, { reconnectMaxDelayMs: 100, commandTimeoutMs: 500 });
      },
      restart: async () => redis?.restart(),
    },
  ],
  ['in-process', { store: async () => memory, restart: async () => memory.simulateRestart() }],
];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe.each(harnesses)('%s registry', (_name, harness) => {
  const open: Registry[] = [];
  const logger = memoryLogger();
  let cluster = '';

  async function registry(options: RegistryOptions = OPTIONS): Promise<Registry> {
    const r = new LeaseRegistry(cluster, await harness.store(logger), logger, options);
    open.push(r);
    return r;
  }

  function record(membership: Membership): MembershipChange[] {
    const changes: MembershipChange[] = [];
    membership.onChange((change) => changes.push(change));
    return changes;
  }

  beforeAll(() => {
    memory = new MemoryLeaseStore();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((r) => r.close()));
    cluster = uniqueCluster();
    expect(logger.lines.filter((l) => l.level === 'error')).toEqual([]);
  });
  cluster = uniqueCluster();

  it('registers, watches, updates and deregisters', async () => {
    const worker = await registry();
    const gateway = await registry();
    const membership = await gateway.watch();
    const changes = record(membership);
    expect(membership.snapshot().size).toBe(0);

    const a = await worker.register(sampleRecord('decode-0'));
    await worker.register(sampleRecord('prefill-0', { role: 'prefill', transfer: undefined }));
    await waitFor('two members', () => membership.snapshot().size === 2, EVENTUALLY_MS);
    expect(membership.snapshot().get('decode-0')).toEqual(sampleRecord('decode-0'));
    expect(membership.snapshot().get('prefill-0')).not.toHaveProperty('transfer');
    expect(changes.map((c) => `${c.kind}:${c.record.id}`).sort()).toEqual(['added:decode-0', 'added:prefill-0']);
    expect((await gateway.list()).map((r) => r.id).sort()).toEqual(['decode-0', 'prefill-0']);

    await a.update(sampleRecord('decode-0', { capacity: { totalBlocks: 10, blockSize: 16, maxNumSeqs: 4 } }));
    await waitFor('update', () => changes.length === 3, EVENTUALLY_MS);
    expect(changes[2]).toMatchObject({ kind: 'updated', record: { capacity: { totalBlocks: 10 } } });

    await a.deregister();
    await waitFor('removal', () => !membership.snapshot().has('decode-0'), EVENTUALLY_MS);
    expect(changes[3]).toMatchObject({ kind: 'removed', record: { id: 'decode-0' } });
    expect(await gateway.list()).toHaveLength(1);
  });

  it('reports a new incarnation under a known id as removed then added', async () => {
    const crashed = await registry();
    const membership = await (await registry()).watch();
    const changes = record(membership);
    await crashed.register(sampleRecord('mixed-0'));
    await waitFor('added', () => changes.length === 1, EVENTUALLY_MS);
    await crashed.close();
    const restarted = await registry();
    await restarted.register(sampleRecord('mixed-0', { incarnation: 'inc-2' })); // before the old lease ran out
    await waitFor('replaced', () => changes.length >= 3, EVENTUALLY_MS);
    expect(changes.map((c) => `${c.kind}:${c.record.incarnation}`)).toEqual([
      'added:inc-mixed-0-1',
      'removed:inc-mixed-0-1',
      'added:inc-2',
    ]);
  });

  it('lets a second register() of one id supersede the first', async () => {
    const worker = await registry();
    const membership = await (await registry()).watch();
    await worker.register(sampleRecord('mixed-1'));
    await worker.register(sampleRecord('mixed-1', { incarnation: 'inc-2' }));
    await sleep(TTL_MS); // the first handle no longer heartbeats its old value over the new one
    expect(membership.snapshot().get('mixed-1')?.incarnation).toBe('inc-2');
  });

  it('a watcher learns of a join and a leave without waiting for its poll', async () => {
    // Polls every minute: a change seen sooner came through the write notification.
    const slow: RegistryOptions = { leaseTtlMs: 180_000, pollIntervalMs: 60_000 };
    const gateway = await registry(slow);
    const membership = await gateway.watch();
    const worker = await registry(slow);
    const joined = await worker.register(sampleRecord('decode-7'));
    await waitFor('join seen', () => membership.snapshot().has('decode-7'), EVENTUALLY_MS);
    await joined.deregister();
    await waitFor('leave seen', () => !membership.snapshot().has('decode-7'), EVENTUALLY_MS);
  });

  it('keeps a heartbeating instance well past its lease', async () => {
    const worker = await registry();
    const membership = await (await registry()).watch();
    const changes = record(membership);
    await worker.register(sampleRecord('decode-1'));
    await sleep(TTL_MS * 2);
    expect(membership.snapshot().has('decode-1')).toBe(true);
    expect(changes.map((c) => c.kind)).toEqual(['added']);
  });

  it('drops an instance that stops heartbeating within its lease plus one poll', async () => {
    const worker = await registry();
    const membership = await (await registry()).watch();
    await worker.register(sampleRecord('decode-2'));
    await waitFor('added', () => membership.snapshot().has('decode-2'), EVENTUALLY_MS);

    const crashedAt = Date.now();
    await worker.close(); // no deregister: what a crash looks like
    await waitFor('expiry', () => !membership.snapshot().has('decode-2'), TTL_MS + POLL_MS + SLACK_MS);
    const elapsed = Date.now() - crashedAt;
    // The last renewal was at most one heartbeat before the crash, so the lease ran at least ttl - heartbeat.
    expect(elapsed).toBeGreaterThanOrEqual(TTL_MS - POLL_MS - 50);
    expect(elapsed).toBeLessThanOrEqual(TTL_MS + POLL_MS + SLACK_MS);
  });

  it('re-registers after the store loses its data, and watchers recover without flapping', async () => {
    const worker = await registry();
    const membership = await (await registry()).watch();
    const changes = record(membership);
    await worker.register(sampleRecord('decode-3'));
    await waitFor('added', () => membership.snapshot().has('decode-3'), EVENTUALLY_MS);

    await harness.restart();
    const probe = await registry();
    await waitFor('re-registration', () => logger.lines.some((l) => l.message.startsWith('re-registered')), 5_000);
    expect((await probe.list()).map((r) => r.id)).toEqual(['decode-3']);

    // The watcher sees instances registered after the restart, and never reported decode-3 as gone.
    await probe.register(sampleRecord('decode-4'));
    await waitFor('watch recovered', () => membership.snapshot().has('decode-4'), TTL_MS + EVENTUALLY_MS);
    expect(membership.synced).toBe(true);
    expect(changes.map((c) => `${c.kind}:${c.record.id}`)).toEqual(['added:decode-3', 'added:decode-4']);

    // Holding removals is temporary: a crash after the restart is still noticed.
    await worker.close();
    await waitFor('expiry after restart', () => !membership.snapshot().has('decode-3'), 2 * TTL_MS + EVENTUALLY_MS);
  });

  it('ignores invalid entries and entries of other clusters', async () => {
    const store = await harness.store(logger);
    const gateway = await registry();
    await store.put(instanceKey(cluster, 'broken'), '{"v":1,"id":"broken"}', TTL_MS, 'always');
    await store.put(instanceKey(`${cluster}x`, 'other'), JSON.stringify({ v: 1, ...sampleRecord('other') }), TTL_MS, 'always');
    const membership = await gateway.watch();
    expect(membership.snapshot().size).toBe(0);
    expect(logger.lines.some((l) => l.message === 'ignoring an invalid registry entry')).toBe(true);
    if (store !== memory) await store.close();
  });

  it('rejects ids that cannot be keys or subject tokens', async () => {
    const worker = await registry();
    await expect(worker.register(sampleRecord('bad.id'))).rejects.toThrow(/instance id/);
  });
});

describe('redis registry connection', () => {
  it('fails clearly when Redis is unreachable', async () => {
    const port = await freePort();
    await expect(RedisLeaseStore.connect(`redis://127.0.0.1:${port}`, memoryLogger(), { connectTimeoutMs: 300 })).rejects.toThrow(
      /cannot connect to Redis at redis:\/\/127\.0\.0\.1/,
    );
  });
});
