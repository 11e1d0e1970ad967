// Added latency of disaggregation with every service in its own process (real Redis and NATS, started
// here on free loopback ports): TTFT of cold 512-token prompts through gateway → decode worker with the
// prompt prefilled on a prefill worker and its KV handed over, ÷ the same through a mixed worker.
// Run: node --import tsx scripts/bench-disagg.ts [--requests 12]
import { parseArgs } from 'node:util';
import { ensureTinyModel } from '@pdserve/model';
import { spawnService, startNats, startRedis, waitFor, type ServiceProcess } from '@pdserve/testkit';
import { machine, median, randomTokens } from './lib/stats';

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '12' } } });
const dir = await ensureTinyModel();
const [redis, nats] = await Promise.all([startRedis(), startNats()]);

async function ttft(cluster: string, workers: [string, string][], remoteMin: number): Promise<number> {
  const shared = ['--model', dir, '--served-model-name', 'tiny', '--cluster', cluster, '--redis', redis.url, '--nats', nats.url, '--log-level', 'warn', '--lease-ttl-ms', '3000'];
  const procs: ServiceProcess[] = [];
  try {
    for (const [id, cmd] of workers) procs.push(await spawnService(id, cmd, [...shared, '--instance-id', id, '--kv-offload', 'off'], '--grpc-port'));
    const gw = await spawnService('gateway', 'gateway', [...shared, '--remote-prefill-min-tokens', String(remoteMin)], '--port');
    procs.push(gw);
    await waitFor('gateway ready', async () => (await fetch(`http://127.0.0.1:${gw.port}/ready`)).status === 200, 90_000);
    await new Promise((r) => setTimeout(r, 1500)); // one membership poll: the gateway sees every worker
    const times: number[] = [];
    const n = Number(args.requests);
    for (let i = 0; i < n + 2; i++) {
      const prompt = [1, ...randomTokens(511, 700 + i)];
      const t0 = performance.now();
      const res = await fetch(`http://127.0.0.1:${gw.port}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt, max_tokens: 1, temperature: 0 }),
      });
      await res.json();
      if (i >= 2) times.push((performance.now() - t0) / 1000); // two warm-up requests
    }
    return median(times);
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
  }
}

const mixed = await ttft('mixed', [['mixed-0', 'mixed-worker']], 1 << 30);
const disagg = await ttft('disagg', [['prefill-0', 'prefill-worker'], ['decode-0', 'decode-worker']], 1);
await Promise.all([redis.stop(), nats.stop()]);
process.stdout.write(
  [
    `Tiny model, every service in its own process (real Redis and NATS); ${machine()}; median of ${args.requests} cold 512-token prompts, max_tokens 1.`,
    '',
    '| topology | TTFT (ms) |',
    '| --- | ---: |',
    `| mixed worker | ${(mixed * 1000).toFixed(1)} |`,
    `| prefill worker → decode worker | ${(disagg * 1000).toFixed(1)} |`,
    `| **disaggregated ÷ mixed** (target ≤ 1.15) | **${(disagg / mixed).toFixed(2)}** |`,
  ].join('\n') + '\n',
);
process.exit(0);
