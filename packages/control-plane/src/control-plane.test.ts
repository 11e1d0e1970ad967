import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeThrowawayCa } from '../../rpc/src/index';
import { freePort, startNats, startRedis, type TestServer } from '../../testkit/src/servers';
import { connectControlPlane, type ControlPlane, type ControlPlaneOptions } from './control-plane';
import { InProcessHub } from './hub';
import { KvEventPublisher } from './kv-event-publisher';
import { natsConnectTarget } from './nats-transport';
import { memoryLogger, sampleRecord, uniqueCluster, waitFor } from './test-helpers';
import type { KvEventBatch } from './types';

let redis: TestServer | undefined;
let nats: TestServer | undefined;

beforeAll(async () => {
  [redis, nats] = await Promise.all([startRedis(), startNats()]);
});
afterAll(async () => {
  await Promise.all([redis?.stop(), nats?.stop()]);
});

/** A gateway and a worker meeting through the control plane: registration, watch, KV events. */
async function gatewayAndWorker(options: Omit<ControlPlaneOptions, 'cluster'>): Promise<ControlPlane[]> {
  const cluster = uniqueCluster();
  const logger = memoryLogger();
  const settings = { cluster, logger, registry: { leaseTtlMs: 600 }, ...options };
  const gateway = await connectControlPlane(settings);
  const worker = await connectControlPlane(settings);
  try {
    const membership = await gateway.registry.watch();
    const got: KvEventBatch[] = [];
    gateway.events.subscribeKv((b) => void got.push(b));
    await gateway.events.flush();

    const registration = await worker.registry.register(sampleRecord('decode-0'));
    const publisher = new KvEventPublisher(worker.events, { worker: 'decode-0', incarnation: 'inc-decode-0-1', flushIntervalMs: 10 });
    publisher.stored(['00000000000000aa'], 'device');
    await waitFor('membership', () => membership.snapshot().has('decode-0'), 2_000);
    await waitFor('kv event', () => got.length === 1, 2_000);
    expect(got[0]).toMatchObject({ worker: 'decode-0', seq: 1 });

    await registration.deregister();
    await waitFor('deregistered', () => membership.snapshot().size === 0, 2_000);
    expect(logger.lines.filter((l) => l.level === 'error')).toEqual([]);
    return [gateway, worker];
  } finally {
    await Promise.all([gateway.close(), worker.close()]);
  }
}

describe('connectControlPlane', () => {
  it('runs embedded through a shared in-process hub when no URLs are given', async () => {
    const [gateway] = await gatewayAndWorker({ hub: new InProcessHub() });
    expect(gateway?.mode).toEqual({ registry: 'in-process', events: 'in-process' });
  });

  it('uses Redis and NATS when their URLs are given', async () => {
    const [gateway] = await gatewayAndWorker({ redisUrl: redis?.url, natsUrl: nats?.url });
    expect(gateway?.mode).toEqual({ registry: 'redis', events: 'nats' });
  });

  it('mixes real and embedded per URL', async () => {
    const [gateway] = await gatewayAndWorker({ redisUrl: redis?.url, hub: new InProcessHub() });
    expect(gateway?.mode).toEqual({ registry: 'redis', events: 'in-process' });
  });

  it('fails clearly, and releases what it opened, when a server is unreachable', async () => {
    const natsUrl = `nats://127.0.0.1:${await freePort()}`;
    await expect(
      connectControlPlane({ cluster: 'c', redisUrl: redis?.url, natsUrl, nats: { connectTimeoutMs: 300 }, logger: memoryLogger() }),
    ).rejects.toThrow(/cannot connect to NATS/);
  });

  it('speaks to a Redis with a password and a NATS with credentials, from their URLs; without them it is refused', async () => {
    const [guardedRedis, guardedNats] = await Promise.all([startRedis({ password: 'r-s3cret' }), startNats({ password: 'n-s3cret' })]);
    try {
      const [gateway] = await gatewayAndWorker({ redisUrl: guardedRedis.url, natsUrl: guardedNats.url });
      expect(gateway?.mode).toEqual({ registry: 'redis', events: 'nats' });
      const bare = (u: string): string => u.replace(/\/\/[^@]*@/, '//');
      // Whoever lacks the password cannot read the registry or register a fake worker, nor listen to events.
      const noRedisPassword = connectControlPlane({
        cluster: 'c',
        redisUrl: bare(guardedRedis.url),
        hub: new InProcessHub(),
        logger: memoryLogger(),
      }).then(async (cp) => {
        try {
          await cp.registry.register(sampleRecord('fake-decode'));
          return 'registered';
        } finally {
          await cp.close();
        }
      });
      await expect(noRedisPassword).rejects.toThrow(/NOAUTH|Authentication required/i);
      await expect(
        connectControlPlane({ cluster: 'c', natsUrl: bare(guardedNats.url), hub: new InProcessHub(), logger: memoryLogger() }),
      ).rejects.toThrow(/Authorization Violation/i);
    } finally {
      await Promise.all([guardedRedis.stop(), guardedNats.stop()]);
    }
  });

  it('speaks TLS to Redis (rediss://) and NATS (tls://), trusting a private CA through NODE_EXTRA_CA_CERTS', async () => {
    const tlsDir = makeThrowawayCa('control-plane');
    const [r, n] = await Promise.all([startRedis({ password: 'r-pw', tlsDir }), startNats({ password: 'n-pw', tlsDir })]);
    try {
      expect(r.url).toMatch(/^rediss:\/\//);
      expect(n.url).toMatch(/^tls:\/\//);
      // A fresh process: Node reads NODE_EXTRA_CA_CERTS when it starts.
      const script = `
        import { connectControlPlane, silentLogger } from ${JSON.stringify(new URL('./index.ts', import.meta.url).pathname)};
        const cp = await connectControlPlane({ cluster: 'tls', redisUrl: process.env.R, natsUrl: process.env.N, logger: silentLogger, nats: { connectTimeoutMs: 3000 }, redis: { connectTimeoutMs: 3000 } });
        await cp.registry.register({ id: 'w', role: 'decode', grpcAddress: '127.0.0.1:1', adminAddress: '', model: 'm', capacity: { totalBlocks: 1, blockSize: 16, maxNumSeqs: 1 }, incarnation: 'i', startedAt: 0 });
        console.log('registered', (await cp.registry.list()).map((x) => x.id).join(','), cp.mode.registry, cp.mode.events);
        await cp.close();
        process.exit(0);`;
      const run = (env: Record<string, string>) =>
        spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          env: { ...process.env, R: r.url, N: n.url, ...env },
          encoding: 'utf8',
          timeout: 30_000,
        });
      const trusted = run({ NODE_EXTRA_CA_CERTS: `${tlsDir}/ca.crt` });
      expect(trusted.stdout.trim(), trusted.stderr).toBe('registered w redis nats');
      const untrusted = run({});
      expect(untrusted.status).not.toBe(0);
      expect(untrusted.stderr).toMatch(/self[- ]signed|unable to (verify|get local issuer)|certificate/i);
    } finally {
      await Promise.all([r.stop(), n.stop()]);
      rmSync(tlsDir, { recursive: true, force: true });
    }
  }, 60_000);

  it('reads NATS credentials and TLS from the URL (the client ignores userinfo)', () => {
    expect(natsConnectTarget('nats://pdserve:p%40ss@nats.infra:4222')).toEqual({
      servers: 'nats://nats.infra:4222',
      user: 'pdserve',
      pass: 'p@ss',
    });
    expect(natsConnectTarget('nats://s3cret-token@nats.infra:4222')).toEqual({ servers: 'nats://nats.infra:4222', token: 's3cret-token' });
    expect(natsConnectTarget('tls://nats.infra:4222')).toEqual({ servers: 'nats://nats.infra:4222', tls: {} });
  });

  it('rejects cluster names that cannot be keys or subject tokens', async () => {
    await expect(connectControlPlane({ cluster: 'a.b' })).rejects.toThrow(/cluster/);
  });
});
