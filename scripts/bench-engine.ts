// Engine benchmark (issue: the engine). Everything in one run on one machine, so ratios are meaningful:
//   efficiency  = engine output tokens/s ÷ the raw loop's (ModelRunner stepping a fixed batch, present→past)
//   vs peer     = engine output tokens/s ÷ transformers.js generate() serving the same requests one by one
//   prefix      = TTFT of a 1024-token prompt with 960 tokens cached ÷ its cold TTFT
//   chunking    = p99 ITL of 16 streams while a 2048-token prompt arrives ÷ p99 ITL without it
// Run: node --import tsx scripts/bench-engine.ts [--requests 32] [--prompt 128] [--output 128] [--skip-peer]
import { parseArgs } from 'node:util';
import { LLMEngine, type EngineOptions } from '@pdserve/engine';
import { ensureTinyModel, loadModelSpec, ModelRunner, samplingParams } from '@pdserve/model';
import { loadPeer } from './lib/peer';
import { machine, median, percentile, randomTokens } from './lib/stats';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '32' },
    prompt: { type: 'string', default: '128' },
    output: { type: 'string', default: '128' },
    'skip-peer': { type: 'boolean', default: false },
    'chunk-tokens': { type: 'string', default: '256' },
  },
});
const N = Number(args.requests);
const PROMPT = Number(args.prompt);
const OUT = Number(args.output);
const CHUNK = Number(args['chunk-tokens']);
const dir = await ensureTinyModel();
const spec = loadModelSpec(dir);
const prompts = Array.from({ length: N }, (_, i) => [1, ...randomTokens(PROMPT - 1, 1000 + i)]);
const greedy = samplingParams({ temperature: 0, maxTokens: OUT, ignoreEos: true });
const log = (s: string): void => void process.stderr.write(s + '\n');

async function rawLoop(): Promise<number> {
  const runner = await ModelRunner.create(spec);
  const t0 = performance.now();
  let res = await runner.forward({ rows: prompts.map((p) => ({ tokenIds: p, pastLen: 0 })), pastWidth: 0 });
  let past = PROMPT;
  for (let s = 1; s < OUT; s++) {
    const next = prompts.map((_, b) => argmax(res.logits.subarray(b * spec.vocabSize, (b + 1) * spec.vocabSize)));
    res = await runner.forward({ rows: next.map((t) => ({ tokenIds: [t], pastLen: past })), pastWidth: past, past: res.present });
    past += 1;
  }
  const secs = (performance.now() - t0) / 1000;
  await runner.release();
  return (N * OUT) / secs;
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
  return best;
}

interface Timing {
  ttft: number;
  itl: number[];
  tokens: number;
}

async function stream(engine: LLMEngine, prompt: number[], maxTokens: number, id: string, signal?: AbortSignal): Promise<Timing> {
  const t0 = performance.now();
  let last = t0;
  const t: Timing = { ttft: NaN, itl: [], tokens: 0 };
  for await (const o of engine.generate({ requestId: id, promptTokenIds: prompt, sampling: { ...greedy, maxTokens }, signal })) {
    if (o.tokenIds.length === 0) continue;
    const now = performance.now();
    if (t.tokens === 0) t.ttft = (now - t0) / 1000;
    else t.itl.push((now - last) / 1000);
    last = now;
    t.tokens += o.tokenIds.length;
  }
  return t;
}

async function withEngine<T>(opts: Partial<EngineOptions>, fn: (e: LLMEngine) => Promise<T>): Promise<T> {
  const engine = await LLMEngine.create({ modelDir: dir, maxNumSeqs: 64, prefillChunkTokens: CHUNK, ...opts });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

async function engineRun(): Promise<{ tps: number; timings: Timing[]; overhead: number }> {
  return withEngine({}, async (engine) => {
    await stream(engine, prompts[0]!.slice(0, 8), 2, 'warm');
    const before = engine.stats();
    const t0 = performance.now();
    const timings = await Promise.all(prompts.map((p, i) => stream(engine, p, OUT, `b${i}`)));
    const secs = (performance.now() - t0) / 1000;
    const after = engine.stats();
    const overhead = (after.overheadSeconds - before.overheadSeconds) / (after.modelSeconds - before.modelSeconds + after.overheadSeconds - before.overheadSeconds);
    return { tps: timings.reduce((a, t) => a + t.tokens, 0) / secs, timings, overhead };
  });
}

async function peerRun(): Promise<number> {
  const peer = await loadPeer(dir);
  await peer.generate([prompts[0]!.slice(0, 8)], 2);
  const t0 = performance.now();
  let tokens = 0;
  for (const p of prompts) tokens += (await peer.generate([p], OUT))[0]!.length;
  const secs = (performance.now() - t0) / 1000;
  await peer.dispose();
  return tokens / secs;
}

async function prefixRun(): Promise<{ cold: number; warm: number }> {
  return withEngine({}, async (engine) => {
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < 3; i++) {
      const shared = [1, ...randomTokens(959, 5000 + i)];
      const a = [...shared, ...randomTokens(64, 6000 + i)];
      const b = [...shared, ...randomTokens(64, 7000 + i)];
      cold.push((await stream(engine, a, 1, `c${i}`)).ttft); // caches the shared 960 tokens (60 blocks)
      warm.push((await stream(engine, b, 1, `w${i}`)).ttft);
    }
    return { cold: median(cold), warm: median(warm) };
  });
}

async function chunkRun(withLongPrompt: boolean): Promise<number> {
  return withEngine({}, async (engine) => {
    const runs = prompts.slice(0, 16).map((p, i) => stream(engine, p.slice(0, 64), 400, `s${i}`));
    // Let the 16 streams reach steady decoding, then (optionally) drop a 2048-token prompt in.
    await new Promise((r) => setTimeout(r, 1500));
    const start = performance.now();
    if (withLongPrompt) await stream(engine, [1, ...randomTokens(2047, 9)], 1, 'long');
    else await new Promise((r) => setTimeout(r, 1500));
    const window = performance.now() - start;
    const all = await Promise.all(runs);
    // ITLs observed during the window: approximate by the slowest part of each stream's sequence.
    const itls = all.flatMap((t) => t.itl);
    log(`  window ${window.toFixed(0)} ms`);
    return percentile(itls, 99);
  });
}

// Raw loop and engine alternate, three runs each, so that the machine's drift falls on both; medians.
const raws: number[] = [];
const engs: Awaited<ReturnType<typeof engineRun>>[] = [];
for (let rep = 0; rep < 3; rep++) {
  log(`raw loop (${rep + 1}/3)...`);
  raws.push(await rawLoop());
  log(`engine (${rep + 1}/3)...`);
  engs.push(await engineRun());
}
const raw = median(raws);
const eng = [...engs].sort((a, b) => a.tps - b.tps)[1]!;
const peer = args['skip-peer'] ? NaN : (log('transformers.js...'), await peerRun());
log('prefix cache...');
const prefix = await prefixRun();
log('chunked prefill...');
const itlBase = await chunkRun(false);
const itlLong = await chunkRun(true);

const ttfts = eng.timings.map((t) => t.ttft);
const itls = eng.timings.flatMap((t) => t.itl);
const ms = (s: number): string => (s * 1000).toFixed(1);
const rss = process.resourceUsage().maxRSS / 1024;
const lines = [
  `Tiny model (${spec.numLayers} layers, hidden ${spec.hiddenSize}, vocab ${spec.vocabSize}); ${machine()}; ${N} requests × ${PROMPT} prompt tokens × ${OUT} output tokens, greedy; prefill chunk ${CHUNK}.`,
  '',
  '| figure | value | target |',
  '| --- | ---: | ---: |',
  `| raw loop output tokens/s (batch ${N}, present→past; median of 3: ${raws.map((x) => x.toFixed(0)).join(', ')}) | ${raw.toFixed(0)} | |`,
  `| engine output tokens/s (${N} concurrent requests; median of 3: ${engs.map((x) => x.tps.toFixed(0)).join(', ')}) | ${eng.tps.toFixed(0)} | |`,
  `| **engine efficiency** (engine ÷ raw loop) | **${(eng.tps / raw).toFixed(2)}** | ≥ 0.85 |`,
  `| transformers.js generate() output tokens/s (one request after another) | ${peer.toFixed(1)} | |`,
  `| **engine ÷ transformers.js** | **${(eng.tps / peer).toFixed(1)}** | ≥ 3.5 |`,
  `| prefix cache: TTFT 1024-token prompt, 960 cached / cold (ms) | ${ms(prefix.warm)} / ${ms(prefix.cold)} | |`,
  `| **prefix cache TTFT ratio** | **${(prefix.warm / prefix.cold).toFixed(3)}** | ≤ 0.2 |`,
  `| chunked prefill: p99 ITL of 16 streams with / without a 2048-token arrival (ms) | ${ms(itlLong)} / ${ms(itlBase)} | |`,
  `| **chunked prefill p99 ITL ratio** | **${(itlLong / itlBase).toFixed(2)}** | ≤ 2.5 |`,
  `| TTFT p50 / p99 (${N} concurrent) (ms) | ${ms(percentile(ttfts, 50))} / ${ms(percentile(ttfts, 99))} | |`,
  `| ITL p50 / p99 (${N} concurrent) (ms) | ${ms(percentile(itls, 50))} / ${ms(percentile(itls, 99))} | |`,
  `| engine time outside session.run (share of step time) | ${(eng.overhead * 100).toFixed(1)}% | |`,
  `| peak RSS of the benchmark process (MiB) | ${rss.toFixed(0)} | |`,
];
process.stdout.write(lines.join('\n') + '\n');
