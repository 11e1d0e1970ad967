// What resilience costs and buys, with every service in its own process (real Redis and NATS, started here
// on free loopback ports):
//   migration  — kill -9 the decode worker under a stream: time from the kill to the next token at the
//                client (p50, max), beside the stream's ordinary inter-token gap;
//   admission  — open-loop load at 2x the cluster's closed-loop throughput, through a gateway without SLO
//                admission and one with --ttft-slo-ms (the same workers, one after the other): TTFT
//                attainment (requests served within the SLO ÷ requests sent) and goodput.
// Run: node --import tsx scripts/bench-resilience.ts [--kills 4] [--seconds 8]
import { parseArgs } from 'node:util';
import { ensureTinyModel } from '@pdserve/model';
import { spawnService, startNats, startRedis, waitFor, type ServiceProcess } from '@pdserve/testkit';
import { machine, median, percentileOf } from './lib/stats';

const { values: args } = parseArgs({ options: { kills: { type: 'string', default: '4' }, seconds: { type: 'string', default: '8' } } });
const KILLS = Number(args.kills);
const SECONDS = Number(args.seconds);
const dir = await ensureTinyModel();
const [redis, nats] = await Promise.all([startRedis(), startNats()]);
const shared = [
  '--model',
  dir,
  '--served-model-name',
  'tiny',
  '--cluster',
  'bench',
  '--redis',
  redis.url,
  '--nats',
  nats.url,
  '--log-level',
  'error',
  '--lease-ttl-ms',
  '1500',
];
const procs = new Map<string, ServiceProcess>();

async function spawn(name: string, cmd: string, extra: string[], portFlag: '--port' | '--grpc-port'): Promise<ServiceProcess> {
  const p = await spawnService(
    name,
    cmd,
    [...shared, ...extra, ...(portFlag === '--grpc-port' ? ['--instance-id', name, '--kv-offload', 'off', '--ort-spin', 'off'] : [])],
    portFlag,
  );
  procs.set(name, p);
  return p;
}

async function running(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('pdserve_engine_running_sequences{'));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

interface Timed {
  readonly status: number;
  /** performance.now() of each text chunk. */
  readonly at: number[];
  readonly start: number;
}

/** One streamed completion; `onChunk` sees the count of text chunks so far. */
async function timed(port: number, body: object, onChunk?: (n: number) => Promise<void> | void): Promise<Timed> {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', stream: true, ignore_eos: true, ...body }),
  });
  const at: number[] = [];
  if (res.status !== 200) {
    await res.text();
    return { status: res.status, at, start: t0 };
  }
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body!) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (ev.startsWith('data: {') && ev.includes('"text"')) {
        at.push(performance.now());
        await onChunk?.(at.length);
      }
    }
  }
  return { status: res.status, at, start: t0 };
}

const workers = Array.from({ length: KILLS + 2 }, (_, i) => `mixed-${i}`);
await Promise.all(workers.map((w) => spawn(w, 'mixed-worker', [], '--grpc-port')));
const plain = await spawn('gateway', 'gateway', [], '--port');
await waitFor('gateway ready', async () => (await fetch(`http://127.0.0.1:${plain.port}/ready`)).status === 200, 120_000);
await new Promise((r) => setTimeout(r, 2_000));

// Migration: one stream at a time; after 20 tokens, kill -9 the worker that is generating it.
const added: number[] = [];
const gaps: number[] = [];
for (let k = 0; k < KILLS; k++) {
  let killedAt = 0;
  let killedAtChunk = 0;
  const r = await timed(
    plain.port,
    { prompt: `Resume this stream after its worker dies, trial ${k}`, max_tokens: 200, temperature: 0 },
    async (n) => {
      if (n !== 20) return;
      for (const w of workers) {
        const p = procs.get(w)!;
        if (p.proc.exitCode !== null || p.proc.signalCode !== null) continue;
        if ((await running(p.adminPort)) > 0) {
          killedAt = performance.now();
          killedAtChunk = n;
          p.proc.kill('SIGKILL');
          return;
        }
      }
    },
  );
  if (killedAt === 0 || r.at.length < killedAtChunk + 50) throw new Error(`trial ${k}: no kill or a short stream (${r.at.length} chunks)`);
  // Tokens already on their way when the worker died still arrive; the resumed stream's first token follows
  // the longest gap among the next few.
  let resumed = killedAtChunk;
  for (let i = killedAtChunk; i < Math.min(r.at.length, killedAtChunk + 20); i++)
    if (r.at[i]! - r.at[i - 1]! > r.at[resumed]! - r.at[resumed - 1]!) resumed = i;
  added.push(r.at[resumed]! - killedAt);
  for (let i = 1; i < killedAtChunk; i++) gaps.push(r.at[i]! - r.at[i - 1]!);
}
process.stdout.write(`# machine: ${machine()}\n`);
process.stdout.write(`migration (${KILLS} kills of the generating worker, kill -9 at token 20 of 200, greedy):\n`);
process.stdout.write(
  `  gap at the migration: p50 ${median(added).toFixed(1)} ms, max ${Math.max(...added).toFixed(1)} ms; ordinary inter-token gap p50 ${median(gaps).toFixed(2)} ms\n`,
);

// Admission: closed-loop throughput at concurrency 8, then open loop at twice that through each gateway.
const spec = (i: number) => ({ prompt: `Overload request ${i % 16}: how many can the cluster take?`, max_tokens: 32, temperature: 0 });
let done = 0;
const ttfts: number[] = [];
const c0 = performance.now();
await Promise.all(
  Array.from({ length: 8 }, async (_, k) => {
    for (let i = k; performance.now() - c0 < 4_000; i += 8) {
      const r = await timed(plain.port, spec(i));
      ttfts.push(r.at[0]! - r.start);
      done++;
    }
  }),
);
const capacity = done / ((performance.now() - c0) / 1000);
const slo = Math.round(percentileOf(ttfts, 90));
const withSlo = await spawn('gateway-slo', 'gateway', ['--ttft-slo-ms', `default=${slo}`], '--port');
await waitFor('gateway-slo ready', async () => (await fetch(`http://127.0.0.1:${withSlo.port}/ready`)).status === 200, 120_000);
await new Promise((r) => setTimeout(r, 2_000));

async function overload(
  port: number,
): Promise<{ sent: number; within: number; refused: number; served: number; p50: number; p99: number }> {
  const rate = 2 * capacity;
  const all: Promise<Timed>[] = [];
  const t0 = performance.now();
  for (let i = 0; performance.now() - t0 < SECONDS * 1000; i++) {
    all.push(timed(port, spec(i)));
    const next = t0 + ((i + 1) / rate) * 1000;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  const rs = await Promise.all(all);
  const served = rs.filter((r) => r.status === 200);
  const firsts = served.map((r) => (r.at[0] ?? Infinity) - r.start);
  return {
    sent: rs.length,
    served: served.length,
    refused: rs.filter((r) => r.status === 429).length,
    within: firsts.filter((t) => t <= slo).length,
    p50: median(firsts),
    p99: percentileOf(firsts, 99),
  };
}
const without = await overload(plain.port);
await new Promise((r) => setTimeout(r, 3_000)); // the backlog drains
const admitted = await overload(withSlo.port);
process.stdout.write(
  `admission (closed-loop throughput ${capacity.toFixed(1)} req/s at concurrency 8, open loop at ${(2 * capacity).toFixed(1)} req/s for ${SECONDS} s, TTFT SLO ${slo} ms = p90 at concurrency 8):\n`,
);
process.stdout.write(
  '| gateway | sent | served | refused (429) | TTFT p50 / p99 of served (ms) | within SLO | attainment (within ÷ sent) | goodput (req/s within SLO) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n',
);
for (const [name, r] of [
  ['no SLO admission', without],
  [`--ttft-slo-ms default=${slo}`, admitted],
] as const) {
  process.stdout.write(
    `| ${name} | ${r.sent} | ${r.served} | ${r.refused} | ${r.p50.toFixed(0)} / ${r.p99.toFixed(0)} | ${r.within} | ${((100 * r.within) / r.sent).toFixed(0)} % | ${(r.within / SECONDS).toFixed(1)} |\n`,
  );
}

await Promise.all([...procs.values()].map((p) => p.kill('SIGKILL')));
await Promise.all([redis.stop(), nats.stop()]);
