// Engine benchmark (issue: the engine). Everything in one run on one machine, so ratios are meaningful:
//   efficiency  = engine output tokens/s ÷ the raw loop's (ModelRunner stepping a fixed batch, present→past)
//   vs peer     = engine output tokens/s ÷ transformers.js generate() serving the same requests one by one
//   prefix      = TTFT of a 1024-token prompt with 960 tokens cached ÷ its cold TTFT
//   chunking    = p99 ITL of 16 streams while a 2048-token prompt arrives ÷ p99 ITL without it
//   at context  = per batch size B (--batches): decode tokens/s of B requests whose prompts are --context
//                 tokens (a shared prefix, prefilled once, and a distinct tail) ÷ the raw loop's over the
//                 same batch; the engine's share of step time outside session.run over those steps
// Run: node --import tsx scripts/bench-engine.ts [--requests 32] [--prompt 128] [--output 128] [--skip-peer]
//      node --import tsx scripts/bench-engine.ts --preset qwen2.5-0.5b   (the real-size sections only)
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { gatherPast, LLMEngine, type EngineOptions } from '@pdserve/engine';
import { BlockPool } from '@pdserve/kv-cache';
import {
  ensureTinyModel,
  kvBytesPerToken,
  loadModelSpec,
  ModelRunner,
  samplingParams,
  type LayerKv,
  type PresetName,
} from '@pdserve/model';
import { loadPeer } from './lib/peer';
import { machine, median, percentileOf, randomTokens } from './lib/stats';

const { values: args } = parseArgs({
  options: {
    preset: { type: 'string' },
    requests: { type: 'string', default: '32' },
    prompt: { type: 'string', default: '128' },
    output: { type: 'string', default: '128' },
    'skip-peer': { type: 'boolean', default: false },
    'chunk-tokens': { type: 'string', default: '256' },
    batches: { type: 'string', default: '1,8,32' },
    context: { type: 'string', default: '1024' },
    'context-output': { type: 'string', default: '16' },
    reps: { type: 'string' },
    sections: { type: 'string' },
    'rss-child': { type: 'boolean', default: false },
  },
});
const PRESET = args.preset as PresetName | undefined;
const N = Number(args.requests);
const PROMPT = Number(args.prompt);
const OUT = Number(args.output);
const CHUNK = Number(args['chunk-tokens']);
const BATCHES = args.batches.split(',').map(Number);
const CONTEXT = Number(args.context);
const CONTEXT_OUT = Number(args['context-output']);
/** A real-size forward takes seconds here: one repetition each unless asked. */
const REPS = Number(args.reps ?? (PRESET ? 1 : 3));
const SECTIONS = new Set((args.sections ?? (PRESET ? 'context,prefix,rss' : 'throughput,peer,prefix,chunk,context,rss')).split(','));
const dir = await ensureTinyModel(PRESET ? { preset: PRESET } : {});
const spec = loadModelSpec(dir);
/** Token ids the tokenizer has (the qwen vocabulary is padded past them). */
const VOCAB = spec.vocabSize > 150_000 ? 151_643 : spec.vocabSize;
const prompts = Array.from({ length: N }, (_, i) => [1, ...randomTokens(PROMPT - 1, 1000 + i, VOCAB)]);
const greedy = samplingParams({ temperature: 0, maxTokens: OUT, ignoreEos: true });
const log = (s: string): void => void process.stderr.write(s + '\n');

async function rawLoop(): Promise<number> {
  const runner = await ModelRunner.create(spec);
  const t0 = performance.now();
  let res = await runner.forward({ rows: prompts.map((p) => ({ tokenIds: p, pastLen: 0 })), pastWidth: 0 });
  let past = PROMPT;
  let next = prompts.map((_, b) => argmax(res.logits.subarray(b * spec.vocabSize, (b + 1) * spec.vocabSize)));
  for (let s = 1; s < OUT; s++) {
    // Greedy: the graph's argmax of each row's logits (as the engine takes for greedy rows), not the logits.
    res = await runner.forward({
      rows: next.map((t) => ({ tokenIds: [t], pastLen: past })),
      pastWidth: past,
      past: res.present,
      argmaxOnly: true,
    });
    next = [...res.argmax!];
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
    const overhead =
      (after.overheadSeconds - before.overheadSeconds) /
      (after.modelSeconds - before.modelSeconds + after.overheadSeconds - before.overheadSeconds);
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
    for (let i = 0; i < REPS; i++) {
      const shared = [1, ...randomTokens(959, 5000 + i, VOCAB)];
      const a = [...shared, ...randomTokens(64, 6000 + i, VOCAB)];
      const b = [...shared, ...randomTokens(64, 7000 + i, VOCAB)];
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
    return percentileOf(itls, 99);
  });
}

/** A [1, ...] tensor's data repeated for `rows` batch rows. */
function tile(one: Float32Array, rows: number): Float32Array {
  const out = new Float32Array(one.length * rows);
  for (let b = 0; b < rows; b++) out.set(one, b * one.length);
  return out;
}

/** The shared prefix of the context section, and one distinct tail per row (prompt = prefix ++ tail). */
const TAIL = 16;
const contextPrefix = [1, ...randomTokens(CONTEXT - TAIL - 1, 4242, VOCAB)];
const tails = (rows: number): number[][] => Array.from({ length: rows }, (_, b) => randomTokens(TAIL, 9000 + b, VOCAB));

/**
 * The raw loop at context: the prefix prefilled once and copied to every row, the rows' tails prefilled
 * in one batch, then decode steps over one preallocated past as wide as the whole run, each step's new KV
 * (forwardNew) written into the next column, the columns not yet written masked out: as the engine's
 * decode path keeps its past (fetching present, past ++ new, would copy the whole past out of onnxruntime
 * every step, and would flatter the engine). Decode tokens/s.
 */
async function rawAtContext(runner: ModelRunner, prefixKv: readonly LayerKv[], rows: number): Promise<number> {
  const P = contextPrefix.length;
  const { numKvHeads: H, headDim: D } = spec;
  const res = await runner.forward({
    rows: tails(rows).map((t) => ({ tokenIds: t, pastLen: P })),
    pastWidth: P,
    past: prefixKv.map((kv) => ({ key: tile(kv.key, rows), value: tile(kv.value, rows) })),
  });
  let width = P + TAIL;
  const cols = width + CONTEXT_OUT;
  // [rows, kvHeads, cols, headDim] per layer, the first `width` columns holding present.
  const past = res.present.map((kv) => {
    const widen = (src: Float32Array): Float32Array => {
      const dst = new Float32Array(rows * H * cols * D);
      for (let rh = 0; rh < rows * H; rh++) dst.set(src.subarray(rh * width * D, (rh + 1) * width * D), rh * cols * D);
      return dst;
    };
    return { key: widen(kv.key), value: widen(kv.value) };
  });
  const pastMask = new Uint8Array(rows * cols);
  for (let b = 0; b < rows; b++) pastMask.fill(1, b * cols, b * cols + width);
  let next = Array.from({ length: rows }, (_, b) => argmax(res.logits.subarray(b * spec.vocabSize, (b + 1) * spec.vocabSize)));
  const t0 = performance.now();
  for (let s = 1; s < CONTEXT_OUT; s++) {
    const step = await runner.forwardNew({
      rows: next.map((t) => ({ tokenIds: [t], pastLen: width })),
      pastWidth: cols,
      past,
      pastMask,
      argmaxOnly: true, // greedy: the graph's argmax, as the engine takes for greedy rows
    });
    step.newKv.forEach((kv, l) => {
      for (let rh = 0; rh < rows * H; rh++) {
        past[l]!.key.set(kv.key.subarray(rh * D, (rh + 1) * D), (rh * cols + width) * D);
        past[l]!.value.set(kv.value.subarray(rh * D, (rh + 1) * D), (rh * cols + width) * D);
      }
    });
    for (let b = 0; b < rows; b++) pastMask[b * cols + width] = 1;
    next = [...step.argmax!];
    width += 1;
  }
  return (rows * (CONTEXT_OUT - 1)) / ((performance.now() - t0) / 1000);
}

/**
 * The engine at context: `rows` requests (prefix cached by a warm-up request, tails distinct) admitted
 * together; decode tokens/s and the share of step time outside session.run, both counted from the
 * moment every request has its first token.
 */
async function engineAtContext(engine: LLMEngine, rows: number): Promise<{ tps: number; overhead: number }> {
  let firsts = 0;
  let after = 0;
  let t0 = 0;
  let before = engine.stats();
  await Promise.all(
    tails(rows).map(async (t, b) => {
      let seen = 0;
      for await (const o of engine.generate({
        requestId: `ctx${rows}-${b}`,
        promptTokenIds: [...contextPrefix, ...t],
        sampling: { ...greedy, maxTokens: CONTEXT_OUT },
      })) {
        if (o.tokenIds.length === 0) continue;
        if (seen++ === 0 && ++firsts === rows) {
          t0 = performance.now();
          before = engine.stats();
        } else if (t0 > 0) after += o.tokenIds.length;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const s = engine.stats();
  const overhead = s.overheadSeconds - before.overheadSeconds;
  return { tps: after / secs, overhead: overhead / (s.modelSeconds - before.modelSeconds + overhead) };
}

interface ContextRow {
  rows: number;
  raw: number[];
  eng: number[];
  overhead: number[];
  gatherMs: number;
}

/**
 * What the executor paid before ResidentKv whenever a decode batch's rows changed: every row's past
 * copied out of the paged blocks into dense tensors. Median of 3, in ms.
 */
function gatherAll(rows: number): number {
  const layout = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize: 16 };
  const perRow = Math.ceil(CONTEXT / 16);
  const pool = new BlockPool(layout, rows * perRow);
  const tables = Array.from({ length: rows }, () => Array.from({ length: perRow }, () => pool.allocate()!));
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    gatherPast(
      pool.data,
      layout,
      tables.map((blockTable) => ({ blockTable, len: CONTEXT })),
      CONTEXT,
    );
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** KV pool for the context section: every row's prompt and output, and a little. */
const contextPoolBytes = (): number =>
  Math.ceil((Math.max(...BATCHES) * (CONTEXT + CONTEXT_OUT + 32) * kvBytesPerToken(spec)) / (1 << 20)) << 20;

interface Memory {
  /** RSS before the engine started, after it loaded, and the most sampled while it served; KV pool bytes. */
  base: number;
  afterLoad: number;
  peak: number;
  poolBytes: number;
}

/**
 * Peak RSS of an engine serving the largest batch at context, measured in a process of its own (the
 * raw loop's tensors and their garbage would blur it here): run as `--rss-child`, prints JSON.
 */
async function rssChild(): Promise<Memory> {
  const rows = Math.max(...BATCHES);
  const m: Memory = { base: process.memoryUsage().rss, afterLoad: 0, peak: 0, poolBytes: contextPoolBytes() };
  const engine = await LLMEngine.create({
    modelDir: dir,
    maxNumSeqs: Math.max(64, rows),
    prefillChunkTokens: CHUNK,
    kvCacheBytes: m.poolBytes,
  });
  m.afterLoad = process.memoryUsage().rss;
  const sampler = setInterval(() => (m.peak = Math.max(m.peak, process.memoryUsage().rss)), 20);
  try {
    await stream(engine, [...contextPrefix, 5], 1, 'ctx-warm');
    await engineAtContext(engine, rows);
  } finally {
    clearInterval(sampler);
    await engine.close();
  }
  return m;
}

function rssSection(): Memory {
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1), '--rss-child'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`the RSS run failed (exit ${r.status})`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Memory;
}

async function contextSection(): Promise<ContextRow[]> {
  const runner = await ModelRunner.create(spec);
  log(`context ${CONTEXT}: prefilling the shared prefix for the raw loop...`);
  const prefixKv = (await runner.forward({ rows: [{ tokenIds: contextPrefix, pastLen: 0 }], pastWidth: 0 })).present;
  const out: ContextRow[] = BATCHES.map((rows) => ({ rows, raw: [], eng: [], overhead: [], gatherMs: NaN }));
  const engine = await LLMEngine.create({
    modelDir: dir,
    maxNumSeqs: Math.max(64, ...BATCHES),
    prefillChunkTokens: CHUNK,
    kvCacheBytes: contextPoolBytes(),
  });
  try {
    log('  engine: caching the shared prefix...');
    await stream(engine, [...contextPrefix, 5], 1, 'ctx-warm');
    for (let rep = 0; rep < REPS; rep++) {
      for (const row of out) {
        // Raw loop and engine alternate, so that the machine's drift falls on both.
        log(`  batch ${row.rows} (${rep + 1}/${REPS}): raw loop...`);
        row.raw.push(await rawAtContext(runner, prefixKv, row.rows));
        log(`  batch ${row.rows} (${rep + 1}/${REPS}): engine...`);
        const e = await engineAtContext(engine, row.rows);
        row.eng.push(e.tps);
        row.overhead.push(e.overhead);
      }
    }
  } finally {
    await engine.close();
    await runner.release();
  }
  for (const row of out) row.gatherMs = gatherAll(row.rows);
  return out;
}

if (args['rss-child']) {
  process.stdout.write(JSON.stringify(await rssChild()) + '\n');
  process.exit(0);
}

const ms = (s: number): string => (s * 1000).toFixed(1);
const list = (xs: number[], d = 0): string => (xs.length > 1 ? ` (median of ${xs.length}: ${xs.map((x) => x.toFixed(d)).join(', ')})` : '');
const shape = `${PRESET ? `Preset ${PRESET}` : 'Tiny model'} (${spec.numLayers} layers, hidden ${spec.hiddenSize}, ${spec.numHeads}/${spec.numKvHeads} heads, vocab ${spec.vocabSize}, ${(kvBytesPerToken(spec) / 1024).toFixed(0)} KiB KV per token)`;
const lines = [`${shape}; ${machine()}; greedy; prefill chunk ${CHUNK}.`, '', '| figure | value | target |', '| --- | ---: | ---: |'];

if (SECTIONS.has('throughput')) {
  // Raw loop and engine alternate, so that the machine's drift falls on both; medians.
  const raws: number[] = [];
  const engs: Awaited<ReturnType<typeof engineRun>>[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    log(`raw loop (${rep + 1}/${REPS})...`);
    raws.push(await rawLoop());
    log(`engine (${rep + 1}/${REPS})...`);
    engs.push(await engineRun());
  }
  const raw = median(raws);
  const eng = [...engs].sort((a, b) => a.tps - b.tps)[Math.floor(engs.length / 2)]!;
  const ttfts = eng.timings.map((t) => t.ttft);
  const itls = eng.timings.flatMap((t) => t.itl);
  lines.push(
    `| raw loop output tokens/s (batch ${N} × ${PROMPT} prompt × ${OUT} output, present→past${list(raws)}) | ${raw.toFixed(0)} | |`,
    `| engine output tokens/s (${N} concurrent requests${list(engs.map((x) => x.tps))}) | ${eng.tps.toFixed(0)} | |`,
    `| **engine efficiency** (engine ÷ raw loop) | **${(eng.tps / raw).toFixed(2)}** | ≥ 0.85 |`,
    `| TTFT p50 / p99 (${N} concurrent) (ms) | ${ms(percentileOf(ttfts, 50))} / ${ms(percentileOf(ttfts, 99))} | |`,
    `| ITL p50 / p99 (${N} concurrent) (ms) | ${ms(percentileOf(itls, 50))} / ${ms(percentileOf(itls, 99))} | |`,
    `| engine time outside session.run (share of step time, whole run) | ${(eng.overhead * 100).toFixed(1)}% | |`,
  );
  if (SECTIONS.has('peer') && !args['skip-peer']) {
    log('transformers.js...');
    const peer = await peerRun();
    lines.push(
      `| transformers.js generate() output tokens/s (one request after another) | ${peer.toFixed(1)} | |`,
      `| **engine ÷ transformers.js** | **${(eng.tps / peer).toFixed(1)}** | ≥ 3.5 |`,
    );
  }
}
if (SECTIONS.has('context')) {
  for (const r of await contextSection()) {
    const raw = median(r.raw);
    const eng = median(r.eng);
    lines.push(
      `| batch ${r.rows}, ${CONTEXT}-token contexts: raw loop / engine decode tokens/s${list(r.raw, 1)}${list(r.eng, 1)} | ${raw.toFixed(1)} / ${eng.toFixed(1)} | |`,
      `| **batch ${r.rows}: engine ÷ raw loop** | **${(eng / raw).toFixed(2)}** | ≥ 0.95 |`,
      // The raw loop and the engine run one after the other in each repetition: the ratio of each pair
      // leaves out the machine's drift between repetitions, which the ratio of the medians keeps.
      ...(r.raw.length > 1
        ? [
            `| batch ${r.rows}: engine ÷ raw loop, each repetition's pair${list(
              r.eng.map((e, i) => e / r.raw[i]!),
              2,
            )} | ${median(r.eng.map((e, i) => e / r.raw[i]!)).toFixed(2)} | |`,
          ]
        : []),
      `| **batch ${r.rows}: step time outside session.run**${list(
        r.overhead.map((x) => x * 100),
        1,
      )} | **${(median(r.overhead) * 100).toFixed(1)}%** | ≤ 5% |`,
      `| batch ${r.rows}: copying every row's past out of blocks (what each change of the batch cost before) / a decode step (ms) | ${r.gatherMs.toFixed(1)} / ${((r.rows / eng) * 1000).toFixed(0)} | |`,
    );
  }
}
if (SECTIONS.has('rss')) {
  log(`peak RSS of an engine alone, batch ${Math.max(...BATCHES)} at ${CONTEXT}-token contexts...`);
  const m = rssSection();
  const gib = (b: number): string => (b / 2 ** 30).toFixed(2);
  const weights = m.afterLoad - m.base;
  const batchKv = Math.max(...BATCHES) * (CONTEXT + CONTEXT_OUT) * kvBytesPerToken(spec);
  lines.push(
    `| peak RSS of an engine serving batch ${Math.max(...BATCHES)} at ${CONTEXT}-token contexts (GiB) = process + weights + KV pool + margin | ${gib(m.peak)} = ${gib(m.base)} + ${gib(weights)} + ${gib(m.poolBytes)} + ${gib(m.peak - m.base - weights - m.poolBytes)} | margin ≤ 4 × the batch's KV + 0.25 (${gib(4 * batchKv + 2 ** 28)}) |`,
  );
}
if (SECTIONS.has('prefix')) {
  log('prefix cache...');
  const prefix = await prefixRun();
  lines.push(
    `| prefix cache: TTFT 1024-token prompt, 960 cached / cold (ms${REPS > 1 ? `, median of ${REPS}` : ''}) | ${ms(prefix.warm)} / ${ms(prefix.cold)} | |`,
    `| **prefix cache TTFT ratio** | **${(prefix.warm / prefix.cold).toFixed(3)}** | ≤ ${PRESET ? '0.1' : '0.2'} |`,
  );
}
if (SECTIONS.has('chunk')) {
  log('chunked prefill...');
  const itlBase = await chunkRun(false);
  const itlLong = await chunkRun(true);
  lines.push(
    `| chunked prefill: p99 ITL of 16 streams with / without a 2048-token arrival (ms) | ${ms(itlLong)} / ${ms(itlBase)} | |`,
    `| **chunked prefill p99 ITL ratio** | **${(itlLong / itlBase).toFixed(2)}** | ≤ 2.5 |`,
  );
}
lines.push(`| peak RSS of the benchmark process (MiB) | ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} | |`);
process.stdout.write(lines.join('\n') + '\n');
