// Added latency of disaggregation with every service in its own process (real Redis and NATS, started
// here on free loopback ports): TTFT of cold prompts (512 tokens unless told), streamed, through gateway →
// decode worker with the prompt prefilled on a prefill worker and its KV handed over, ÷ the same through a
// mixed worker. TTFT is the first streamed token as the client sees it; the second token's arrival (after
// the KV handoff, for the disaggregated path) is reported beside it, and its gap after the first set
// against the mixed worker's inter-token latency (last token − first, over the tokens between).
// With --streaming-off, another topology beside them: the same disaggregated pair with --kv-streaming off
// (the whole prompt's KV after the first token); with --tail-off, one with --decode-computes-tail off (the
// prefill worker samples the first token and the last block moves after it): each option's effect is read
// off one run.
// Run: node --import tsx scripts/bench-disagg.ts [--requests 12] [--warmup 10] [--prompt-tokens 512] [--output-tokens 8] [--preset qwen2.5-0.5b] [--streaming-off] [--tail-off]
import { parseArgs } from 'node:util';
import { ensureTinyModel, type PresetName } from '@pdserve/model';
import { spawnService, startNats, startRedis, waitFor, type ServiceProcess } from '@pdserve/testkit';
import { machine, median, sideBySide, type StreamTimings } from './lib/stats';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '12' },
    warmup: { type: 'string', default: '10' },
    'prompt-tokens': { type: 'string', default: '512' },
    'output-tokens': { type: 'string', default: '8' },
    preset: { type: 'string' },
    'streaming-off': { type: 'boolean', default: false },
    'tail-off': { type: 'boolean', default: false },
  },
});
const preset = args.preset as PresetName | undefined;
const dir = await ensureTinyModel(preset === undefined ? {} : { preset });
const [redis, nats] = await Promise.all([startRedis(), startNats()]);

const OUTPUT_TOKENS = Number(args['output-tokens']);
const PROMPT_TOKENS = Number(args['prompt-tokens']);

interface Topology {
  readonly url: string;
  readonly procs: ServiceProcess[];
}

async function start(cluster: string, workers: [string, string][], remoteMin: number, gatewayArgs: string[] = []): Promise<Topology> {
  const shared = [
    '--model',
    dir,
    '--served-model-name',
    'tiny',
    '--cluster',
    cluster,
    '--redis',
    redis.url,
    '--nats',
    nats.url,
    '--log-level',
    'warn',
    '--lease-ttl-ms',
    '3000',
  ];
  const procs: ServiceProcess[] = [];
  // Every engine shares this host's two cores, as under `serve`: none spin-waits (--ort-spin off).
  for (const [id, cmd] of workers)
    procs.push(
      await spawnService(
        `${cluster}-${id}`,
        cmd,
        [...shared, '--instance-id', id, '--kv-offload', 'off', '--ort-spin', 'off'],
        '--grpc-port',
      ),
    );
  const gw = await spawnService(
    `${cluster}-gateway`,
    'gateway',
    [...shared, '--remote-prefill-min-tokens', String(remoteMin), ...gatewayArgs],
    '--port',
  );
  procs.push(gw);
  const url = `http://127.0.0.1:${gw.port}`;
  await waitFor('gateway ready', async () => (await fetch(`${url}/ready`)).status === 200, 90_000);
  return { url, procs };
}

const summary = (ts: readonly StreamTimings[]): StreamTimings => ({
  first: median(ts.map((t) => t.first)),
  second: median(ts.map((t) => t.second)),
  total: median(ts.map((t) => t.total)),
  last: median(ts.map((t) => t.last)),
  tokens: median(ts.map((t) => t.tokens)),
});
/** The 2nd token's gap after the 1st, and the mean gap between tokens after the 2nd (a decode step). */
const gap = (ts: readonly StreamTimings[]): number => median(ts.map((t) => t.second - t.first));
const itl = (ts: readonly StreamTimings[]): number =>
  median(ts.map((t) => (t.tokens > 2 ? (t.last - t.second) / (t.tokens - 2) : Number.NaN)));

// The topologies run side by side and take the same prompts in alternation (each prompt is cold in
// each), so that the machine's drift over the run hits them alike.
const pd: [string, string][] = [
  ['prefill-0', 'prefill-worker'],
  ['decode-0', 'decode-worker'],
];
/** Further disaggregated topologies, each the pair with one gateway flag off. */
const variants = [...(args['streaming-off'] ? ['--kv-streaming'] : []), ...(args['tail-off'] ? ['--decode-computes-tail'] : [])];
const topologies = [await start('mixed', [['mixed-0', 'mixed-worker']], 1 << 30), await start('disagg', pd, 1)];
for (const flag of variants) topologies.push(await start(`disagg${flag.slice(1)}-off`, pd, 1, [flag, 'off']));
await new Promise((r) => setTimeout(r, 1500)); // one membership poll: each gateway sees its workers
// Warm-up prompts first, the same number to each topology: a server runs warm, and a process's JIT takes
// a few requests to settle on each path (the disaggregated one runs more code: Prefill stream, handoff).
const warmup = Number(args.warmup);
const times = await sideBySide(
  topologies.map((t) => t.url),
  { prompts: Number(args.requests), warmup, seed: 700, maxTokens: OUTPUT_TOKENS, promptTokens: PROMPT_TOKENS },
);
await Promise.all(topologies.flatMap((t) => t.procs.map((p) => p.kill())));
const [mixed, disagg, ...others] = times.map(summary) as [StreamTimings, StreamTimings, ...StreamTimings[]];
const pairRatio = median(times[1]!.map((t, i) => t.first / times[0]![i]!.first));
const [mixedTimes, disaggTimes] = times as [StreamTimings[], StreamTimings[]];
await Promise.all([redis.stop(), nats.stop()]);
const ms = (secs: number): string => (secs * 1000).toFixed(1);
process.stdout.write(
  [
    `${preset === undefined ? 'Tiny model' : `Tiny model, preset ${preset}`}, every service in its own process (real Redis and NATS); ${machine()}; median of ${args.requests} cold ${PROMPT_TOKENS}-token prompts after ${warmup} warm-up prompts, streamed, ${OUTPUT_TOKENS} output tokens, the ${topologies.length} topologies side by side taking each prompt in turn.`,
    '',
    '| topology | TTFT (ms) | 2nd token (ms) | 2nd − 1st (ms) | later tokens, each (ms) | whole stream (ms) |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...(
      [
        ['mixed worker', mixed, mixedTimes],
        ['prefill worker → decode worker', disagg, disaggTimes],
        ...variants.map((flag, i) => [`same, ${flag} off`, others[i]!, times[i + 2]!] as const),
      ] as const
    ).map(([name, t, all]) => `| ${name} | ${ms(t.first)} | ${ms(t.second)} | ${ms(gap(all))} | ${ms(itl(all))} | ${ms(t.total)} |`),
    `| **disaggregated ÷ mixed** | **${(disagg.first / mixed.first).toFixed(2)}** | ${(disagg.second / mixed.second).toFixed(2)} | | | **${(disagg.total / mixed.total).toFixed(2)}** |`,
    ...variants.map(
      (flag, i) =>
        `| ${flag} off ÷ mixed | ${(others[i]!.first / mixed.first).toFixed(2)} | ${(others[i]!.second / mixed.second).toFixed(2)} | | | ${(others[i]!.total / mixed.total).toFixed(2)} |`,
    ),
    '',
    `Median of the per-prompt TTFT ratios (each prompt went to both): ${pairRatio.toFixed(2)}. The disaggregated 2nd token came ${ms(gap(disaggTimes) - itl(mixedTimes))} ms later after the 1st than a mixed worker's token after the one before (issue 19 target ≤ 5 ms).`,
  ].join('\n') + '\n',
);
process.exit(0);
