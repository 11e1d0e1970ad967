// How soon a watcher in another connection sees a worker join the Redis registry (the gateway learning of
// a new worker): register() to the watcher's `added`, with the poll at its default (a third of the lease).
// Run: node --import tsx scripts/bench-registry.ts [--joins 50]
import { connectControlPlane, silentLogger } from '@pdserve/control-plane';
import { startRedis } from '@pdserve/testkit';

const at = process.argv.indexOf('--joins');
const joins = at > 0 ? Number(process.argv[at + 1]) : 50;
const redis = await startRedis();
const worker = await connectControlPlane({ cluster: 'bench', redisUrl: redis.url, logger: silentLogger });
const gateway = await connectControlPlane({ cluster: 'bench', redisUrl: redis.url, logger: silentLogger });
const membership = await gateway.registry.watch();
const ms: number[] = [];
for (let i = 0; i < joins; i++) {
  const id = `w${i}`;
  const seen = new Promise<void>((resolve) => {
    const off = membership.onChange((c) => c.kind === 'added' && c.record.id === id && (off(), resolve()));
  });
  const t0 = performance.now();
  const reg = await worker.registry.register({
    id,
    role: 'decode',
    grpcAddress: '127.0.0.1:1',
    adminAddress: '',
    model: 'm',
    incarnation: id,
    startedAt: Date.now(),
    capacity: { totalBlocks: 1, blockSize: 16, maxNumSeqs: 1 },
  });
  await seen;
  ms.push(performance.now() - t0);
  await reg.deregister();
}
ms.sort((a, b) => a - b);
process.stdout.write(
  `${joins} joins: seen by the watcher after p50 ${ms[Math.floor(joins / 2)]!.toFixed(1)} ms, max ${ms[joins - 1]!.toFixed(1)} ms\n`,
);
membership.close();
await Promise.all([worker.close(), gateway.close()]);
await redis.stop();
