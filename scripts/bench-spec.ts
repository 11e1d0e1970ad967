// Speculative decoding benchmark (a script, not a test): output tokens/s with ÷ without speculation at
// batch 1, 8 and 32, for draft/target pairs whose acceptance rate is ≈ 0.9, ≈ 0.6 and ≈ 0, at K = 2, 4, 8;
// the verify forward's cost against one decode step; and what the draft's prompt KV costs to build.
//
//   nice node --import tsx scripts/bench-spec.ts [--tokens 64] [--quick] [--calibrate] [--target-layers 4]
//       [--scales 0.02,0.1] [--batches 1,8,32] [--ks 2,4,8] [--draft-quantize int8|none|int4[,...]]
//
// The pairs are synthetic (model tiny's draftPair: the draft is the target's first layer, the target's
// other layers scaled by a residual scale that sets the agreement; α ≈ 0 is a draft of another seed).
// --draft-quantize: the draft's weights (default int8; a list, e.g. none,int8, runs each draft alongside the
// others in the same rounds); the target is always float32.
// Random weights: these figures measure speculation's machinery on this CPU, not a real model's acceptance.
import {
  draftPair,
  ensureTinyModel,
  kvBytesPerToken,
  loadModelSpec,
  ModelRunner,
  QUANTIZATIONS,
  samplingParams,
  type LayerKv,
  type Quantization,
} from '@pdserve/model';
import { LLMEngine, type SpeculativeOptions } from '@pdserve/engine';
import { speculationPrompts } from './lib/stats';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const TOKENS = flag('tokens', 64);
const list = (name: string, fallback: number[]): number[] => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]!.split(',').map(Number) : fallback;
};
const QUICK = args.includes('--quick');
const BATCHES = list('batches', QUICK ? [1, 8] : [1, 8, 32]);
const KS = list('ks', QUICK ? [4] : [2, 4, 8]);
/** The target's depth: the draft is always its first layer (default 4: the built-in tiny shape). */
const TARGET_LAYERS = flag('target-layers', 4);
/** Residual scales that gave acceptance ≈ 0.9 and ≈ 0.6 on the default tiny shape (see --calibrate). */
const [SCALE_HIGH, SCALE_MID] = list('scales', [0.02, 0.1]) as [number, number];
/** Draft weights to compare: float32 ('none') or quantized (the target is always float32). */
const DRAFT_WEIGHTS: DraftWeights[] = (() => {
  const i = args.indexOf('--draft-quantize');
  const given = i >= 0 ? args[i + 1]!.split(',') : ['int8'];
  for (const q of given)
    if (q !== 'none' && !(QUANTIZATIONS as readonly string[]).includes(q)) throw new Error(`--draft-quantize: unknown ${q}`);
  return given as DraftWeights[];
})();
type DraftWeights = Quantization | 'none';
const quantizeOption = (w: DraftWeights): Quantization | undefined => (w === 'none' ? undefined : w);
const SETTINGS: { name: string; scale: number | 'unrelated' }[] = [
  { name: 'α≈0.9', scale: SCALE_HIGH },
  { name: 'α≈0.6', scale: SCALE_MID },
  { name: 'α≈0', scale: 'unrelated' },
];

interface Run {
  readonly tokensPerSecond: number;
  readonly acceptance?: number;
  readonly meanPerStep?: number;
  /** Share of the wall time the draft's forwards took. */
  readonly draftShare?: number;
}

/** `batch` greedy requests at once, TOKENS each; output tokens / wall seconds (prefill included, prompts are 17 tokens). */
async function run(engine: LLMEngine, batch: number): Promise<Run> {
  const params = samplingParams({ temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  const before = engine.stats().speculation;
  const t0 = performance.now();
  let tokens = 0;
  await Promise.all(
    speculationPrompts(batch).map(async (p, i) => {
      for await (const o of engine.generate({ requestId: `b${i}`, promptTokenIds: p, sampling: params })) tokens += o.tokenIds.length;
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const after = engine.stats().speculation;
  if (!after || !before) return { tokensPerSecond: tokens / seconds };
  const draft = after.draftTokens - before.draftTokens;
  const steps = after.verifiedSequenceSteps - before.verifiedSequenceSteps;
  return {
    tokensPerSecond: tokens / seconds,
    acceptance: draft > 0 ? (after.acceptedTokens - before.acceptedTokens) / draft : 0,
    meanPerStep: steps > 0 ? (after.emittedTokens - before.emittedTokens) / steps : 1,
    draftShare: (after.draftForwardSeconds - before.draftForwardSeconds) / seconds,
  };
}

/** An engine whose model threads do not spin-wait: several are up at once and take turns. */
async function open(modelDir: string, speculative: SpeculativeOptions | undefined): Promise<LLMEngine> {
  const e = await LLMEngine.create({ modelDir, kvCacheBytes: 256 << 20, speculative, runner: { allowSpinning: false } });
  await run(e, 2); // warm-up
  return e;
}

async function withEngine<T>(modelDir: string, speculative: SpeculativeOptions | undefined, fn: (e: LLMEngine) => Promise<T>): Promise<T> {
  const e = await open(modelDir, speculative);
  try {
    return await fn(e);
  } finally {
    await e.close();
  }
}

async function pairFor(scale: number | 'unrelated', weights: DraftWeights): Promise<{ target: string; draft: string }> {
  const quantize = quantizeOption(weights);
  if (scale === 'unrelated')
    return {
      target: await ensureTinyModel(draftPair({ layers: TARGET_LAYERS }, 1, SCALE_MID).target),
      draft: await ensureTinyModel({ layers: 1, seed: 1, ...(quantize ? { quantize } : {}) }),
    };
  const p = draftPair({ layers: TARGET_LAYERS }, 1, scale, quantize);
  return { target: await ensureTinyModel(p.target), draft: await ensureTinyModel(p.draft) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** One forward of `batch` rows, `width` past tokens each, `newTokens` new tokens and as many logits. */
function forwarder(r: ModelRunner, batch: number, width: number, newTokens: number): () => Promise<unknown> {
  const s = r.spec;
  const floats = batch * s.numKvHeads * width * s.headDim;
  const past: LayerKv[] = Array.from({ length: s.numLayers }, () => ({
    key: new Float32Array(floats).fill(0.01),
    value: new Float32Array(floats).fill(0.01),
  }));
  const rows = Array.from({ length: batch }, () => ({
    tokenIds: Array.from({ length: newTokens }, (_, i) => 100 + i),
    pastLen: width,
    numLogits: newTokens,
  }));
  return () => r.forward({ rows, pastWidth: width, past });
}

/** Median wall and CPU seconds of each forward, run in turn (20 rounds after 2 of warm-up). */
async function alternatedCosts(forwards: (() => Promise<unknown>)[]): Promise<{ wall: number; cpu: number }[]> {
  const wall: number[][] = forwards.map(() => []);
  const cpu: number[][] = forwards.map(() => []);
  for (let round = 0; round < 22; round++) {
    for (let i = 0; i < forwards.length; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await forwards[i]!();
      const dc = process.cpuUsage(c0);
      if (round < 2) continue;
      wall[i]!.push((performance.now() - t0) / 1000);
      cpu[i]!.push((dc.user + dc.system) / 1e6);
    }
  }
  return forwards.map((_, i) => ({ wall: median(wall[i]!), cpu: median(cpu[i]!) }));
}

/** Median seconds of one forward: `batch` rows, `width` past tokens each, `newTokens` new tokens and as many logits. */
async function forwardSeconds(r: ModelRunner, batch: number, width: number, newTokens: number): Promise<number> {
  const forward = forwarder(r, batch, width, newTokens);
  const times: number[] = [];
  for (let i = 0; i < 12; i++) {
    const t0 = performance.now();
    await forward();
    if (i >= 2) times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

async function main(): Promise<void> {
  const out: string[] = [];
  const say = (line: string): void => {
    out.push(line);
    process.stdout.write(line + '\n');
  };

  if (args.includes('--calibrate')) {
    for (const scale of list('scales', [0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5]))
      for (const w of DRAFT_WEIGHTS) {
        const { target, draft } = await pairFor(scale, w);
        const r = await withEngine(target, { method: 'draft', modelDir: draft, numTokens: 4 }, (e) => run(e, 8));
        say(`scale ${scale}, draft ${w}: acceptance ${r.acceptance!.toFixed(2)}, ${r.meanPerStep!.toFixed(2)} tokens/step`);
      }
    return;
  }

  say(
    `## Speculative decoding (scripts/bench-spec.ts, ${TOKENS} output tokens per request, greedy, target ${TARGET_LAYERS} layers, draft 1)`,
  );
  say('');
  say('| pair | draft | K | batch | acceptance | tokens/step | draft time | tok/s off | tok/s on | on ÷ off |');
  say('|---|---|---|---|---|---|---|---|---|---|');
  for (const setting of SETTINGS) {
    const pairs = await Promise.all(DRAFT_WEIGHTS.map((w) => pairFor(setting.scale, w)));
    const target = pairs[0]!.target;
    const variants = DRAFT_WEIGHTS.flatMap((w, d) => KS.map((k) => ({ w, k, draft: pairs[d]!.draft })));
    // Every engine of a setting is up at once and runs alternate (off, then each draft × K; three rounds,
    // medians), so the load others put on the machine falls on all of them alike.
    const engines = [
      await open(target, undefined),
      ...(await Promise.all(variants.map((v) => open(target, { method: 'draft', modelDir: v.draft, numTokens: v.k })))),
    ];
    try {
      for (const b of BATCHES) {
        const runs: Run[][] = engines.map(() => []);
        for (let round = 0; round < 3; round++) for (let i = 0; i < engines.length; i++) runs[i]!.push(await run(engines[i]!, b));
        const med = (rs: Run[]): Run => [...rs].sort((x, y) => x.tokensPerSecond - y.tokensPerSecond)[1]!;
        const off = med(runs[0]!).tokensPerSecond;
        variants.forEach(({ w, k }, j) => {
          const rs = runs[j + 1]!;
          const r = med(rs);
          const acc = rs.reduce((a, x) => a + (x.acceptance ?? 0), 0) / rs.length;
          const per = rs.reduce((a, x) => a + (x.meanPerStep ?? 1), 0) / rs.length;
          const share = rs.reduce((a, x) => a + (x.draftShare ?? 0), 0) / rs.length;
          say(
            `| ${setting.name} | ${w === 'none' ? 'fp32' : w} | ${k} | ${b} | ${acc.toFixed(2)} | ${per.toFixed(2)} | ${(share * 100).toFixed(0)} % | ${off.toFixed(0)} | ${r.tokensPerSecond.toFixed(0)} | ${(r.tokensPerSecond / off).toFixed(2)}× |`,
          );
        });
      }
    } finally {
      for (const e of engines) await e.close();
    }
  }

  say('');
  say('Verify forward (K+1 new tokens, K+1 logits) against one decode step (1 token), 256 past tokens, target model:');
  say('');
  say('| batch | decode step | K=2 verify | K=4 verify | K=8 verify |');
  say('|---|---|---|---|---|');
  const target = await ensureTinyModel(draftPair({ layers: TARGET_LAYERS }, 1, SCALE_MID).target);
  const runner = await ModelRunner.create(loadModelSpec(target));
  for (const b of BATCHES) {
    const one = await forwardSeconds(runner, b, 256, 1);
    const cells = [];
    for (const k of [2, 4, 8]) {
      const v = await forwardSeconds(runner, b, 256, k + 1);
      cells.push(`${(v * 1000).toFixed(1)} ms (${(v / one).toFixed(2)}×)`);
    }
    say(`| ${b} | ${(one * 1000).toFixed(1)} ms | ${cells.join(' | ')} |`);
  }

  // What a draft round costs by the draft's weights: 1 new token (a round), and 5 (a catch-up before K=4).
  // The forwards alternate (target step, then each draft) so that load falls on all alike; CPU time is the
  // process's (onnxruntime's threads, no spin-waiting), less sensitive to others on the machine than wall time.
  say('');
  say('Draft forward (1-layer draft, 256 past tokens, medians of 20 alternated) against one decode step of the target:');
  say('');
  say('| batch | draft | 1 token (a round): wall, CPU | 5 tokens (a catch-up): wall, CPU |');
  say('|---|---|---|---|');
  const quiet = { allowSpinning: false };
  const stepRunner = await ModelRunner.create(loadModelSpec(target), quiet);
  const drafts = await Promise.all(
    DRAFT_WEIGHTS.map(async (w) => ({ w, runner: await ModelRunner.create(loadModelSpec((await pairFor(SCALE_MID, w)).draft), quiet) })),
  );
  for (const b of BATCHES) {
    const cells = new Map<DraftWeights, string[]>(DRAFT_WEIGHTS.map((w) => [w, []]));
    for (const n of [1, 5]) {
      const [step, ...perDraft] = await alternatedCosts([
        forwarder(stepRunner, b, 256, 1),
        ...drafts.map((d) => forwarder(d.runner, b, 256, n)),
      ]);
      drafts.forEach(({ w }, i) => {
        const c = perDraft[i]!;
        cells
          .get(w)!
          .push(
            `${(c.wall * 1000).toFixed(2)} ms (${(c.wall / step!.wall).toFixed(2)}×), ${(c.cpu * 1000).toFixed(2)} ms (${(c.cpu / step!.cpu).toFixed(2)}×)`,
          );
      });
    }
    for (const w of DRAFT_WEIGHTS) say(`| ${b} | ${w === 'none' ? 'fp32' : w} | ${cells.get(w)!.join(' | ')} |`);
  }
  for (const { runner: d } of drafts) await d.release();
  await stepRunner.release();

  // Where to build the draft's prompt KV: on the decode worker (its draft prefills the prompt at import)
  // or on the prefill worker (which would ship it with the target's).
  const draftDir = (await pairFor(SCALE_MID, DRAFT_WEIGHTS[0]!)).draft;
  const draftRunner = await ModelRunner.create(loadModelSpec(draftDir));
  say('');
  say('Draft prompt KV: built on the decode worker (draft prefill) vs shipped from the prefill worker (extra bytes):');
  say('');
  say('| prompt tokens | target prefill | draft prefill | draft KV bytes (× target KV) |');
  say('|---|---|---|---|');
  const ratio = kvBytesPerToken(draftRunner.spec) / kvBytesPerToken(runner.spec);
  for (const n of [128, 512, 2048]) {
    const time = async (r: ModelRunner): Promise<number> => {
      const ts: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        await r.forward({ rows: [{ tokenIds: Array.from({ length: n }, (_, j) => 100 + (j % 3000)), pastLen: 0 }], pastWidth: 0 });
        ts.push((performance.now() - t0) / 1000);
      }
      return median(ts);
    };
    const t = await time(runner);
    const d = await time(draftRunner);
    say(
      `| ${n} | ${(t * 1000).toFixed(0)} ms | ${(d * 1000).toFixed(0)} ms (${((d / t) * 100).toFixed(0)}%) | ${((n * kvBytesPerToken(draftRunner.spec)) / 1024).toFixed(0)} KiB (${ratio.toFixed(2)}×) |`,
    );
  }
  await runner.release();
  await draftRunner.release();
}

await main();
