// Attack suite, inside the cluster. Real processes (a gateway, a prefill worker, a decode worker and a kv-store,
// each `pdserve <service> --tls-dir`) on a Redis with a password and a NATS with a user, and an attacker in this
// process who can reach every port: a plaintext gRPC client and a client certified by another CA are refused;
// a request that names an address of the attacker's (a prefill target, a tcp data port, a kv-store sink) never
// makes a service dial it; KV pushed under a transfer id no request named is refused; a kv-store takes no put or remove from a host that is
// no registered service; and with all of this on, the cluster's output is token-identical to the reference.
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { Metadata, makeGenericClientConstructor, type Client, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectControlPlane, silentLogger, type ControlPlane } from '@pdserve/control-plane';
import { KvStoreClient } from '@pdserve/kv-store';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { channelCredentials, loadService, makeThrowawayCa, readTlsDir, tlsChannelOptions, type TlsMaterial } from '@pdserve/rpc';
import { completion, spawnService, startNats, startRedis, waitFor, type ServiceProcess, type TestServer } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { PROTOCOL_VERSION, TRANSFER_PROTO, TransferSender, packHashes } from '@pdserve/transfer';
import { samplingToWire, WorkerClient } from '@pdserve/worker';

const CLUSTER = 'attack';
let redis: TestServer;
let nats: TestServer;
let cp: ControlPlane;
let dirs: string[] = [];
let tls: TlsMaterial;
let foreign: TlsMaterial;
let tokenizer: Tokenizer;
let runner: ModelRunner;
const procs: ServiceProcess[] = [];
let gateway: ServiceProcess;
/** A listener of the attacker's: it counts every connection a service makes to it. */
let trap: Server;
let trapAddress: string;
const trapped: Socket[] = [];

const addressOf = async (id: string): Promise<{ grpc: string; data: string }> => {
  const r = (await cp.registry.list()).find((m) => m.id === id);
  if (r === undefined) throw new Error(`${id} is not registered`);
  return { grpc: r.grpcAddress, data: r.dataAddress ?? '' };
};

beforeAll(async () => {
  const dir = await ensureTinyModel();
  tokenizer = await Tokenizer.fromDir(dir);
  runner = await ModelRunner.create(loadModelSpec(dir));
  dirs = [makeThrowawayCa('cluster'), makeThrowawayCa('attacker')];
  tls = readTlsDir(dirs[0]!);
  foreign = readTlsDir(dirs[1]!);
  [redis, nats] = await Promise.all([startRedis({ password: 'redis-pw-1f9' }), startNats({ password: 'nats-pw-7c2' })]);
  cp = await connectControlPlane({ cluster: CLUSTER, redisUrl: redis.url, natsUrl: nats.url, logger: silentLogger });
  trap = createServer((s) => void trapped.push(s.on('error', () => undefined)));
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
  trapAddress = `127.0.0.1:${(trap.address() as { port: number }).port}`;
  const shared = [
    '--model',
    dir,
    '--served-model-name',
    'tiny',
    '--cluster',
    CLUSTER,
    '--redis',
    redis.url,
    '--nats',
    nats.url,
    '--log-level',
    'error',
    '--tls-dir',
    dirs[0]!,
    '--tls',
    'on',
  ];
  const engine = ['--kv-cache-bytes', '32M'];
  procs.push(
    await spawnService('p0', 'prefill-worker', [...shared, ...engine, '--instance-id', 'p0', '--kv-offload', 'off'], '--grpc-port'),
    await spawnService('d0', 'decode-worker', [...shared, ...engine, '--instance-id', 'd0', '--transports', 'tcp'], '--grpc-port'),
    await spawnService('s0', 'kv-store', [...shared, '--instance-id', 's0', '--memory-bytes', '64M'], '--grpc-port'),
  );
  gateway = await spawnService('gateway', 'gateway', [...shared, '--remote-prefill-min-tokens', '4'], '--port');
  procs.push(gateway);
  const dump = (): string => procs.map((p) => `--- ${p.name}\n${p.output().slice(-1500)}`).join('\n');
  await waitFor('3 services registered', async () => (await cp.registry.list()).length >= 3, 90_000).catch((e: Error) =>
    Promise.reject(new Error(`${e.message}\n${dump()}`)),
  );
  await waitFor('gateway ready', async () => (await fetch(`http://127.0.0.1:${gateway.port}/ready`)).status === 200, 60_000).catch(
    (e: Error) => Promise.reject(new Error(`${e.message}\n${dump()}`)),
  );
}, 180_000);

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  await cp?.close();
  await Promise.all([redis?.stop(), nats?.stop()]);
  await runner?.release();
  for (const s of trapped) s.destroy();
  trap?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('mTLS on every internal port', () => {
  it('a plaintext gRPC client and a client certified by another CA are refused; one of the cluster CA is served', async () => {
    for (const id of ['p0', 'd0']) {
      const { grpc } = await addressOf(id);
      for (const [who, creds] of [
        ['plaintext', undefined],
        ['wrong CA', foreign],
      ] as const) {
        const c = new WorkerClient(grpc, creds);
        try {
          await expect(c.health(2_000), `${who} → ${id}`).rejects.toMatchObject({ code: 'UNAVAILABLE' });
        } finally {
          c.close();
        }
      }
      const ok = new WorkerClient(grpc, tls);
      try {
        expect((await ok.health(5_000)).instance_id).toBe(id);
      } finally {
        ok.close();
      }
    }
    const { grpc } = await addressOf('s0');
    for (const creds of [undefined, foreign]) {
      const c = new KvStoreClient(grpc, creds);
      try {
        await expect(c.health()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      } finally {
        c.close();
      }
    }
  });

  it('the cluster stays token-identical to the reference with TLS on (prefilled remotely, KV over tcp)', async () => {
    for (const prompt of ['Through mutual TLS and back again, token for token', 'A second prompt, long enough to be prefilled remotely']) {
      const ids = tokenizer.encode(prompt);
      const ref = await referenceGenerate(
        runner,
        ids,
        samplingParams({ temperature: 0, maxTokens: 10, stopTokenIds: tokenizer.eosTokenIds }),
      );
      const res = await fetch(`http://127.0.0.1:${gateway.port}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt, max_tokens: 10, temperature: 0 }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe(completion(tokenizer, ids, ref.tokenIds));
    }
    const d0 = new WorkerClient((await addressOf('d0')).grpc, tls);
    try {
      expect((await d0.stats()).prefill_tokens_computed).toBe(0); // the prefill worker did it, the KV came over mTLS tcp
    } finally {
      d0.close();
    }
  });
});

describe('no service dials an address a request names', () => {
  const sampling = () => samplingToWire(samplingParams({ temperature: 0, maxTokens: 4, stopTokenIds: tokenizer.eosTokenIds }));

  it('Prefill with the attacker as target: PERMISSION_DENIED, never dialed', async () => {
    const p0 = new WorkerClient((await addressOf('p0')).grpc, tls);
    try {
      const events = (async () => {
        for await (const _ of p0.prefill({
          request_id: 'steal',
          prompt_token_ids: tokenizer.encode('secret prompt'),
          sampling: sampling(),
          from_block: 0,
          target: { grpc_address: trapAddress, transfer_id: 'steal-1', transport: 'auto' },
        }));
      })();
      await expect(events).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    } finally {
      p0.close();
    }
  });

  it('KV pushed to a decode worker under a transfer id no request named: refused, never kept (even from a certified peer)', async () => {
    const forger = new TransferSender({ tls });
    try {
      const block = { hash: '00000000000000aa', data: new Uint8Array(32 * 1024).fill(7) };
      await expect(
        forger.send({
          peer: { grpcAddress: (await addressOf('d0')).grpc },
          blocks: [block],
          transport: 'tcp',
          transferId: 'forged-popular-prefix',
          meta: { first: '{}' },
          deadlineMs: 10_000,
        }),
      ).rejects.toMatchObject({ code: 'REFUSED', message: expect.stringContaining('unexpected transfer forged-popular-prefix') });
    } finally {
      forger.close();
    }
  });

  it('a KvTransfer Begin naming the attacker as tcp data port: REFUSED, never dialed (decode worker and kv-store)', async () => {
    const def = loadService<Record<string, unknown>>(TRANSFER_PROTO, 'pdserve.v1.KvTransfer', 'Transfer');
    const Ctor = makeGenericClientConstructor(def, 'KvTransfer');
    // The decode worker takes in only transfers a request named (and then pulls only from registered data
    // ports); the kv-store pulls a put only from a registered data port.
    for (const [id, why] of [
      ['d0', /unexpected transfer forged-d0/],
      ['s0', new RegExp(`data port ${trapAddress} is not a registered peer's`)],
    ] as const) {
      const client = new Ctor((await addressOf(id)).grpc, channelCredentials(tls), tlsChannelOptions(tls)) as unknown as Client & {
        Transfer: (m: Metadata) => ClientDuplexStream<unknown, unknown>;
      };
      try {
        const call = client.Transfer(new Metadata());
        const ended = new Promise<ServiceError>((resolve) => call.on('error', resolve));
        call.on('data', () => undefined);
        call.write({
          kind: 'begin',
          begin: {
            protocol_version: PROTOCOL_VERSION,
            transfer_id: `forged-${id}`,
            transport: 'tcp',
            meta: {},
            total_bytes: 1024,
            tcp_source: trapAddress,
            tcp_token: new Uint8Array(8).fill(1),
            block_hashes: packHashes(['00000000000000aa']),
            block_lengths: [1024],
          },
        });
        expect((await ended).details, id).toMatch(why);
      } finally {
        client.close();
      }
    }
  });

  it('a kv-store Get with the attacker as sink: PERMISSION_DENIED, never dialed', async () => {
    const s0 = new KvStoreClient((await addressOf('s0')).grpc, tls);
    try {
      await expect(
        s0.get({
          model_id: 'tiny',
          hashes: ['00000000000000aa'],
          lease_ms: 0,
          sink: { grpc_address: trapAddress, transfer_id: 'steal-2', transport: 'auto' },
        }),
      ).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    } finally {
      s0.close();
    }
  });

  afterAll(async () => {
    await new Promise((r) => setTimeout(r, 200));
    expect(trapped.length, 'connections a service made to the attacker').toBe(0);
  });
});

describe('a kv-store without TLS takes writes only from registered hosts', () => {
  let store: ServiceProcess;
  let lonely: ControlPlane;

  beforeAll(async () => {
    // Alone in its cluster at 127.0.0.2: this process (127.0.0.1) is no registered service's host.
    store = await spawnService(
      's1',
      'kv-store',
      [
        '--cluster',
        'lonely',
        '--redis',
        redis.url,
        '--nats',
        nats.url,
        '--served-model-name',
        'tiny',
        '--tls',
        'off',
        '--host',
        '127.0.0.2',
        '--instance-id',
        's1',
        '--memory-bytes',
        '16M',
        '--log-level',
        'error',
      ],
      '--grpc-port',
    );
    procs.push(store);
    lonely = await connectControlPlane({ cluster: 'lonely', redisUrl: redis.url, natsUrl: nats.url, logger: silentLogger });
    await waitFor('s1 registered', async () => (await lonely.registry.list()).some((r) => r.id === 's1'), 60_000);
  }, 90_000);

  afterAll(async () => {
    await store?.kill();
    await lonely?.close();
  });

  it('BeginPut and Remove from an unregistered host: PERMISSION_DENIED; once a service registers there, accepted', async () => {
    const rec = (await lonely.registry.list()).find((r) => r.id === 's1')!;
    const c = new KvStoreClient(rec.grpcAddress);
    try {
      await expect(c.beginPut('tiny', [{ hash: '00000000000000aa', size: 64 }])).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      await expect(c.remove('tiny', ['00000000000000aa'])).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      // A put in one transfer (put_begin): refused before any byte is placed.
      const sender = new TransferSender();
      try {
        await expect(
          c.put(sender, 'tiny', [{ hash: '00000000000000ab', data: new Uint8Array(64).fill(1) }], { transport: 'grpc' }),
        ).rejects.toThrow(/127\.0\.0\.1 is not a service registered in this cluster/);
      } finally {
        sender.close();
      }
      const reg = await lonely.registry.register({
        id: 'w-here',
        role: 'decode',
        grpcAddress: '127.0.0.1:1',
        adminAddress: '',
        model: 'tiny',
        capacity: { totalBlocks: 1, blockSize: 16, maxNumSeqs: 1 },
        incarnation: 'x',
        startedAt: Date.now(),
      });
      try {
        // Accepted as soon as the store's view of the registry has it (a miss re-reads it, at most every 250 ms).
        await waitFor(
          'a put from a registered host',
          () =>
            c.beginPut('tiny', [{ hash: '00000000000000aa', size: 64 }]).then(
              (r) => r.put_id !== '',
              () => false,
            ),
          5_000,
        );
      } finally {
        await reg.deregister();
      }
    } finally {
      c.close();
    }
  });
});
