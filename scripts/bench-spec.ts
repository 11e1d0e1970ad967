// Speculative decoding benchmark (a script, not a test): output tokens/s with ÷ without speculation at
// batch 1, 8 and 32, for draft/target pairs whose acceptance rate is ≈ 0.9, ≈ 0.6 and ≈ 0, at K = 2, 4, 8;
// the verify forward's cost against one decode step; and what the draft's prompt KV costs to build.
//
//   nice node --import tsx scripts/bench-spec.ts [--tokens 64] [--quick] [--calibrate] [--target-layers 4]
//       [--scales 0.02,0.1] [--batches 1,8,32] [--ks 2,4,8]
//
// The pairs are synthetic (model tiny's draftPair: the draft is the target's first layer, the target's
// other layers scaled by a residual scale that sets the agreement; α ≈ 0 is a draft of another seed).
// Random weights: these figures measure speculation's machinery on this CPU, not a real model's acceptance.
import { draftPair, ensureTinyModel, kvBytesPerToken, loadModelSpec, ModelRunner, samplingParams, type LayerKv } from '@pdserve/model';
import { LLMEngine, type SpeculativeOptions } from '@pdserve/engine';

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
const SETTINGS: { name: string; scale: number | 'unrelated' }[] = [
  { name: 'α≈0.9', scale: SCALE_HIGH },
  { name: 'α≈0.6', scale: SCALE_MID },
  { name: 'α≈0', scale: 'unrelated' },
];

function prompts(n: number): number[][] {
  let s = 12345;
  const next = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s / 2 ** 32);
  return Array.from({ length: n }, () => [1, ...Array.from({ length: 16 }, () => 3 + Math.floor(next() * 31990))]);
}

interface Run {
  readonly tokensPerSecond: number;
  readonly acceptance?: number;
  readonly meanPerStep?: number;
}

/** `batch` greedy requests at once, TOKENS each; output tokens / wall seconds (prefill included, prompts are 17 tokens). */
async function run(engine: LLMEngine, batch: number): Promise<Run> {
  const params = samplingParams({ temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  const before = engine.stats().speculation;
  const t0 = performance.now();
  let tokens = 0;
  await Promise.all(
    prompts(batch).map(async (p, i) => {
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

async function pairFor(scale: number | 'unrelated'): Promise<{ target: string; draft: string }> {
  if (scale === 'unrelated')
    return {
      target: await ensureTinyModel(draftPair({ layers: TARGET_LAYERS }, 1, SCALE_MID).target),
      draft: await ensureTinyModel({ layers: 1, seed: 1 }),
    };
  const p = draftPair({ layers: TARGET_LAYERS }, 1, scale);
  return { target: await ensureTinyModel(p.target), draft: await ensureTinyModel(p.draft) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median seconds of one forward: `batch` rows, `width` past tokens each, `newTokens` new tokens and as many logits. */
async function forwardSeconds(r: ModelRunner, batch: number, width: number, newTokens: number): Promise<number> {
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
  const times: number[] = [];
  for (let i = 0; i < 12; i++) {
    const t0 = performance.now();
    await r.forward({ rows, pastWidth: width, past });
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
    for (const scale of list('scales', [0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5])) {
      const { target, draft } = await pairFor(scale);
      const r = await withEngine(target, { method: 'draft', modelDir: draft, numTokens: 4 }, (e) => run(e, 8));
      say(`scale ${scale}: acceptance ${r.acceptance!.toFixed(2)}, ${r.meanPerStep!.toFixed(2)} tokens/step`);
    }
    return;
  }

  say(
    `## Speculative decoding (scripts/bench-spec.ts, ${TOKENS} output tokens per request, greedy, target ${TARGET_LAYERS} layers, draft 1)`,
  );
  say('');
  say('| pair | K | batch | acceptance | tokens/step | tok/s off | tok/s on | on ÷ off |');
  say('|---|---|---|---|---|---|---|---|');
  for (const setting of SETTINGS) {
    const { target, draft } = await pairFor(setting.scale);
    // Every engine of a setting is up at once and runs alternate (off, K=2, K=4, ... three rounds, medians),
    // so the load others put on the machine falls on all of them alike.
    const engines = [
      await open(target, undefined),
      ...(await Promise.all(KS.map((k) => open(target, { method: 'draft', modelDir: draft, numTokens: k })))),
    ];
    try {
      for (const b of BATCHES) {
        const runs: Run[][] = engines.map(() => []);
        for (let round = 0; round < 3; round++) for (let i = 0; i < engines.length; i++) runs[i]!.push(await run(engines[i]!, b));
        const med = (rs: Run[]): Run => [...rs].sort((x, y) => x.tokensPerSecond - y.tokensPerSecond)[1]!;
        const off = med(runs[0]!).tokensPerSecond;
        KS.forEach((k, j) => {
          const rs = runs[j + 1]!;
          const r = med(rs);
          const acc = rs.reduce((a, x) => a + (x.acceptance ?? 0), 0) / rs.length;
          const per = rs.reduce((a, x) => a + (x.meanPerStep ?? 1), 0) / rs.length;
          say(
            `| ${setting.name} | ${k} | ${b} | ${acc.toFixed(2)} | ${per.toFixed(2)} | ${off.toFixed(0)} | ${r.tokensPerSecond.toFixed(0)} | ${(r.tokensPerSecond / off).toFixed(2)}× |`,
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

  // Where to build the draft's prompt KV: on the decode worker (its draft prefills the prompt at import)
  // or on the prefill worker (which would ship it with the target's).
  const draftDir = await ensureTinyModel(draftPair({ layers: TARGET_LAYERS }, 1, SCALE_MID).draft);
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
