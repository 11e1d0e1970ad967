// One behavioural suite, run against the NATS bus (real nats-server) and the in-process one.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startNats, type TestServer } from '../../testkit/src/servers';
import { TransportEventBus, type EventBus, type EventBusOptions } from './event-bus';
import { InProcessBroker, InProcessTransport } from './in-process-transport';
import { KvEventPublisher } from './kv-event-publisher';
import type { Logger } from './log';
import { kvSubject } from './names';
import { NatsTransport } from './nats-transport';
import { memoryLogger, sleep, uniqueCluster, waitFor } from './test-helpers';
import type { SubjectTransport } from './transport';
import type { ConnectionStatus } from './transport';
import type { KvEventBatch, LoadReport } from './types';

interface Harness {
  /** A new participant with its own connection. */
  transport(logger: Logger): Promise<SubjectTransport>;
  /** Restarts the server (real transports only). */
  restart?: () => Promise<void>;
}

let nats: TestServer | undefined;
let broker = new InProcessBroker();

const harnesses: [string, Harness][] = [
  [
    'nats',
    {
      transport: (logger) => {
        if (nats === undefined) throw new Error('nats not started');
        return NatsTransport.connect(nats.url, logger, { reconnectWaitMs: 50 });
      },
      restart: async () => nats?.restart(),
    },
  ],
  ['in-process', { transport: async () => new InProcessTransport(broker) }],
];

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

const h = (i: number): string => i.toString(16).padStart(16, '0');
const kv = (worker: string, seq: number, hashes: readonly string[]): KvEventBatch => ({
  worker,
  incarnation: `${worker}-inc`,
  seq,
  events: [{ kind: 'stored', tier: 'device', hashes }],
});
const load = (worker: string, running: number): LoadReport => ({
  worker,
  running,
  waiting: 0,
  freeBlocks: 90,
  totalBlocks: 100,
  queuedPrefillTokens: 17,
  ts: Date.now(),
});

describe.each(harnesses)('%s event bus', (_name, harness) => {
  const open: EventBus[] = [];
  const logger = memoryLogger();
  let cluster = uniqueCluster();

  async function bus(options: EventBusOptions = {}): Promise<EventBus> {
    const b = new TransportEventBus(cluster, await harness.transport(logger), logger, options);
    open.push(b);
    return b;
  }

  beforeAll(() => {
    broker = new InProcessBroker();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.close()));
    cluster = uniqueCluster();
    expect(logger.lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('delivers KV batches from every worker, in order, asynchronously', async () => {
    const [gateway, w1, w2] = [await bus(), await bus(), await bus()];
    const got: KvEventBatch[] = [];
    gateway.subscribeKv((batch) => void got.push(batch));
    await gateway.flush();

    w1.publishKv(kv('decode-0', 1, [h(1)]));
    w1.publishKv(kv('decode-0', 2, [h(2), h(3)]));
    w2.publishKv({ worker: 'prefill-0', incarnation: 'p', seq: 1, events: [{ kind: 'cleared' }] });
    expect(got).toHaveLength(0); // never synchronous
    await waitFor('three batches', () => got.length === 3);
    const fromW1 = got.filter((b) => b.worker === 'decode-0');
    expect(fromW1).toEqual([kv('decode-0', 1, [h(1)]), kv('decode-0', 2, [h(2), h(3)])]);
    expect(got.find((b) => b.worker === 'prefill-0')?.events).toEqual([{ kind: 'cleared' }]);
    expect(gateway.stats()).toMatchObject({ received: 3, invalid: 0 });
    expect(w1.stats()).toMatchObject({ published: 2, dropped: 0, buffered: 0 });
  });

  it('delivers load reports, and filters by worker when asked', async () => {
    const [gateway, worker] = [await bus(), await bus()];
    const all: LoadReport[] = [];
    const one: LoadReport[] = [];
    const kvSeen: KvEventBatch[] = [];
    gateway.subscribeLoad((r) => void all.push(r));
    gateway.subscribeLoad((r) => void one.push(r), { worker: 'decode-1' });
    gateway.subscribeKv((b) => void kvSeen.push(b));
    await gateway.flush();

    worker.publishLoad(load('decode-0', 1));
    worker.publishLoad(load('decode-1', 2));
    await waitFor('two reports', () => all.length === 2 && one.length === 1);
    expect(one[0]).toEqual(expect.objectContaining({ worker: 'decode-1', running: 2, queuedPrefillTokens: 17 }));
    expect(kvSeen).toHaveLength(0);
  });

  it('stops delivering after unsubscribe', async () => {
    const [gateway, worker] = [await bus(), await bus()];
    const got: LoadReport[] = [];
    const sub = gateway.subscribeLoad((r) => void got.push(r));
    await gateway.flush();
    worker.publishLoad(load('decode-0', 1));
    await waitFor('first report', () => got.length === 1);
    sub.unsubscribe();
    await gateway.flush();
    worker.publishLoad(load('decode-0', 2));
    await worker.flush();
    await sleep(50);
    expect(got).toHaveLength(1);
  });

  it('skips invalid messages and survives handlers that throw', async () => {
    const [gateway, worker] = [await bus(), await bus()];
    const raw = await harness.transport(logger);
    const got: KvEventBatch[] = [];
    gateway.subscribeKv(() => {
      throw new Error('handler bug');
    });
    gateway.subscribeKv(async (b) => {
      got.push(b);
      if (b.seq === 1) throw new Error('async handler bug');
    });
    await gateway.flush();

    raw.publish(kvSubject(cluster, 'decode-0'), new TextEncoder().encode('{"v":1,"worker":"decode-0"}'));
    raw.publish(kvSubject(cluster, 'decode-9'), new Uint8Array([1, 2, 3]));
    await raw.flush();
    worker.publishKv(kv('decode-0', 1, [h(1)]));
    worker.publishKv(kv('decode-0', 2, [h(2)]));
    await waitFor('valid batches', () => got.length === 2);
    expect(gateway.stats().invalid).toBe(4); // each of the two subscriptions saw both bad messages
    const failures = logger.lines.filter((l) => l.message === 'control message handler failed');
    expect(failures).toHaveLength(3);
    logger.lines.splice(0); // the handler failures above were on purpose
    await raw.close();
  });

  it('carries a KvEventPublisher stream end to end', async () => {
    const [gateway, worker] = [await bus(), await bus()];
    const got: KvEventBatch[] = [];
    gateway.subscribeKv((b) => void got.push(b));
    await gateway.flush();
    const publisher = new KvEventPublisher(worker, { worker: 'decode-0', incarnation: 'x', flushIntervalMs: 20, maxBatchEvents: 3 });
    publisher.stored([h(1), h(2), h(3), h(4)], 'device'); // one full batch now, the rest on time
    publisher.removed([h(1)], 'device');
    await waitFor('two batches', () => got.length === 2, 2_000);
    expect(got.map((b) => b.seq)).toEqual([1, 2]);
    expect(got[1]?.events).toEqual([
      { kind: 'stored', tier: 'device', hashes: [h(4)] },
      { kind: 'removed', tier: 'device', hashes: [h(1)] },
    ]);
    publisher.close();
  });

  it.runIf(harness.restart !== undefined)(
    'survives a server restart: status flips, subscriptions resume, KV buffered while down',
    async () => {
      const [gateway, worker] = [await bus(), await bus({ maxBufferedKvBatches: 3 })];
      const statuses: ConnectionStatus[] = [];
      gateway.onStatus((s) => statuses.push(s));
      const got: KvEventBatch[] = [];
      const reports: LoadReport[] = [];
      gateway.subscribeKv((b) => void got.push(b));
      gateway.subscribeLoad((r) => void reports.push(r));
      worker.subscribeKv((b) => void got.push(b)); // the publisher's own subscription sees its buffered batches
      await Promise.all([gateway.flush(), worker.flush()]);

      await nats?.stop();
      await waitFor('disconnect', () => gateway.status === 'disconnected' && worker.status === 'disconnected');
      for (let seq = 1; seq <= 5; seq += 1) worker.publishKv(kv('decode-0', seq, [h(seq)]));
      worker.publishLoad(load('decode-0', 1));
      expect(worker.stats()).toMatchObject({ buffered: 3, dropped: 3 }); // two oldest KV + the load report

      await harness.restart?.();
      await waitFor('reconnect', () => gateway.status === 'connected' && worker.status === 'connected', 10_000);
      expect(statuses).toEqual(['disconnected', 'connected']);
      await waitFor('buffered batches', () => got.filter((b) => b.seq >= 3).length >= 3, 5_000);
      expect(worker.stats().buffered).toBe(0);

      await gateway.flush();
      worker.publishKv(kv('decode-0', 6, [h(6)]));
      worker.publishLoad(load('decode-0', 2));
      await waitFor('delivery after restart', () => got.some((b) => b.seq === 6) && reports.length === 1, 5_000);
    },
  );
});

describe('nats connection', () => {
  it('fails clearly when NATS is unreachable', async () => {
    const server = await startNats();
    const url = server.url;
    await server.stop();
    await expect(NatsTransport.connect(url, memoryLogger(), { connectTimeoutMs: 300 })).rejects.toThrow(
      /cannot connect to NATS at nats:\/\/127\.0\.0\.1/,
    );
  });
});
