// Added latency of disaggregation with every service in its own process (real Redis and NATS, started
// here on free loopback ports): TTFT of cold 512-token prompts, streamed, through gateway → decode worker
// with the prompt prefilled on a prefill worker and its KV handed over, ÷ the same through a mixed
// worker. TTFT is the first streamed token as the client sees it; the second token's arrival (after the
// KV handoff, for the disaggregated path) is reported beside it.
// Run: node --import tsx scripts/bench-disagg.ts [--requests 12]
import { parseArgs } from 'node:util';
import { ensureTinyModel } from '@pdserve/model';
import { spawnService, startNats, startRedis, waitFor, type ServiceProcess } from '@pdserve/testkit';
import { machine, median, randomTokens, streamTimings, type StreamTimings } from './lib/stats';

const { values: args } = parseArgs({ options: { requests: { type: 'string', default: '12' } } });
const dir = await ensureTinyModel();
const [redis, nats] = await Promise.all([startRedis(), startNats()]);

const OUTPUT_TOKENS = 8;

async function ttft(cluster: string, workers: [string, string][], remoteMin: number): Promise<StreamTimings> {
  const shared = ['--model', dir, '--served-model-name', 'tiny', '--cluster', cluster, '--redis', redis.url, '--nats', nats.url, '--log-level', 'warn', '--lease-ttl-ms', '3000'];
  const procs: ServiceProcess[] = [];
  try {
    for (const [id, cmd] of workers) procs.push(await spawnService(id, cmd, [...shared, '--instance-id', id, '--kv-offload', 'off'], '--grpc-port'));
    const gw = await spawnService('gateway', 'gateway', [...shared, '--remote-prefill-min-tokens', String(remoteMin)], '--port');
    procs.push(gw);
    await waitFor('gateway ready', async () => (await fetch(`http://127.0.0.1:${gw.port}/ready`)).status === 200, 90_000);
    await new Promise((r) => setTimeout(r, 1500)); // one membership poll: the gateway sees every worker
    const times: StreamTimings[] = [];
    const n = Number(args.requests);
    for (let i = 0; i < n + 2; i++) {
      const prompt = [1, ...randomTokens(511, 700 + i)];
      const t = await streamTimings(`http://127.0.0.1:${gw.port}/v1/completions`,
        { model: 'tiny', prompt, max_tokens: OUTPUT_TOKENS, temperature: 0, ignore_eos: true });
      if (i >= 2) times.push(t); // two warm-up requests
    }
    return {
      first: median(times.map((t) => t.first)), second: median(times.map((t) => t.second)), total: median(times.map((t) => t.total)),
    };
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
  }
}

const mixed = await ttft('mixed', [['mixed-0', 'mixed-worker']], 1 << 30);
const disagg = await ttft('disagg', [['prefill-0', 'prefill-worker'], ['decode-0', 'decode-worker']], 1);
await Promise.all([redis.stop(), nats.stop()]);
const ms = (secs: number): string => (secs * 1000).toFixed(1);
process.stdout.write(
  [
    `Tiny model, every service in its own process (real Redis and NATS); ${machine()}; median of ${args.requests} cold 512-token prompts, streamed, ${OUTPUT_TOKENS} output tokens.`,
    '',
    '| topology | TTFT (ms) | 2nd token (ms) | whole stream (ms) |',
    '| --- | ---: | ---: | ---: |',
    ...([['mixed worker', mixed], ['prefill worker → decode worker', disagg]] as const).map(([name, t]) =>
      `| ${name} | ${ms(t.first)} | ${ms(t.second)} | ${ms(t.total)} |`),
    `| **disaggregated ÷ mixed** (TTFT target ≤ 1.15) | **${(disagg.first / mixed.first).toFixed(2)}** | ${(disagg.second / mixed.second).toFixed(2)} | ${(disagg.total / mixed.total).toFixed(2)} |`,
  ].join('\n') + '\n',
);
process.exit(0);
