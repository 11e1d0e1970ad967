// Side-by-side A/B of speculation at α ≈ 0 (a script, not a test): speculation off, this tree's speculation
// and, with --base, another tree's engine (e.g. an older commit's packages/engine, extracted with git archive
// next to a symlink to this tree's packages/engine/node_modules), all in one process, alternating every run
// so that load from elsewhere falls on each alike. Besides tokens/s it reports what load moves less: the
// engine (main) thread's CPU seconds per step (Linux schedstat), engine counters (overhead outside
// session.run, draft seconds), verify steps and the draft's catch-up tokens; tokens must be identical.
//
//   nice node --import tsx scripts/ab-spec.ts [--tokens 96] [--batches 1,8] [--rounds 7] [--k 4]
//       [--base /path/to/tree/packages/engine/src/index.ts] [--only off,base,new]
//
// The pair is bench-spec.ts's α ≈ 0 one: the 16-layer synthetic target and a 1-layer draft of another seed.
import { draftPair, ensureTinyModel, samplingParams } from '@pdserve/model';
import { LLMEngine } from '@pdserve/engine';
import { readFileSync } from 'node:fs';
import { median, speculationPrompts } from './lib/stats';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : fallback;
};
const TOKENS = Number(opt('tokens', '96'));
const BATCHES = opt('batches', '1,8').split(',').map(Number);
const ROUNDS = Number(opt('rounds', '5'));
const BASE = opt('base', '');
const K = Number(opt('k', '4'));

type Engine = Pick<LLMEngine, 'generate' | 'stats' | 'close'>;
interface Sample {
  tps: number;
  cpu: number;
  steps: number;
  overhead: number;
  model: number;
  draft: number;
  verified: number;
  catchUp: number;
  tokens: number[][];
  /** CPU seconds of the engine's (main) thread. */
  busy: number;
  /** Median and mean model-thread seconds of a decode step. */
  stepMedian: number;
  stepMean: number;
}

/** Seconds the main thread has been on a CPU (its schedstat: not time waiting to run, as wall time under load is). */
const mainCpu = (): number => Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
const stepLog = new WeakMap<object, number[]>();

async function run(e: Engine, batch: number): Promise<Sample> {
  stepLog.get(e)?.splice(0);
  const params = samplingParams({ temperature: 0, maxTokens: TOKENS, ignoreEos: true });
  const a = e.stats();
  const c0 = process.cpuUsage();
  const m0 = mainCpu();
  const t0 = performance.now();
  const tokens: number[][] = [];
  await Promise.all(
    speculationPrompts(batch).map(async (p, i) => {
      const out: number[] = [];
      for await (const o of e.generate({ requestId: `b${i}`, promptTokenIds: p, sampling: params })) out.push(...o.tokenIds);
      tokens[i] = out;
    }),
  );
  const sec = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const busy = mainCpu() - m0;
  const b = e.stats();
  return {
    tps: (batch * TOKENS) / sec,
    cpu: (c.user + c.system) / 1e6,
    steps: b.steps - a.steps,
    overhead: b.overheadSeconds - a.overheadSeconds,
    model: b.modelSeconds - a.modelSeconds,
    draft: (b.speculation?.draftProposeSeconds ?? 0) - (a.speculation?.draftProposeSeconds ?? 0),
    verified: (b.speculation?.verifiedSequenceSteps ?? 0) - (a.speculation?.verifiedSequenceSteps ?? 0),
    catchUp: (b.speculation?.draftCatchUpTokens ?? 0) - (a.speculation?.draftCatchUpTokens ?? 0),
    tokens,
    busy,
    stepMedian: median(stepLog.get(e) ?? [0]),
    stepMean: (stepLog.get(e) ?? []).reduce((a, x) => a + x, 0) / Math.max(1, stepLog.get(e)?.length ?? 0),
  };
}

async function main(): Promise<void> {
  const target = await ensureTinyModel(draftPair({ layers: 16 }, 1, 0.03).target);
  const draft = await ensureTinyModel({ layers: 1, seed: 1 });
  const Base = BASE ? ((await import(BASE)) as { LLMEngine: typeof LLMEngine }).LLMEngine : undefined;
  const mk = async (E: typeof LLMEngine, spec: boolean): Promise<Engine> => {
    const log: number[] = [];
    const e = await E.create({
      modelDir: target,
      kvCacheBytes: 256 << 20,
      speculative: spec ? { method: 'draft', modelDir: draft, numTokens: K } : undefined,
      runner: { allowSpinning: false },
      onStep: (st) => {
        if (st.phase === 'decode') log.push(st.seconds);
      },
    });
    stepLog.set(e, log);
    await run(e, 2);
    return e;
  };
  const only = opt('only', Base ? 'off,base,new' : 'off,new').split(',');
  const all: [string, () => Promise<Engine>][] = [
    ['off', () => mk(LLMEngine, false)],
    ['base', () => mk(Base!, true)],
    ['new', () => mk(LLMEngine, true)],
  ];
  const names = only.filter((n) => all.some(([m]) => m === n));
  const engines: Engine[] = [];
  for (const n of names) engines.push(await all.find(([m]) => m === n)![1]());
  const ref = new Map<number, string>();
  for (const batch of BATCHES) {
    const samples: Sample[][] = engines.map(() => []);
    for (let r = 0; r < ROUNDS; r++) {
      // Rotate the order each round so no engine always follows the same one.
      for (let j = 0; j < engines.length; j++) {
        const i = (j + r) % engines.length;
        const s = await run(engines[i]!, batch);
        const key = JSON.stringify(s.tokens);
        if (!ref.has(batch)) ref.set(batch, key);
        else if (ref.get(batch) !== key) throw new Error(`${names[i]} batch ${batch}: tokens differ`);
        samples[i]!.push(s);
      }
    }
    const off = median(samples[0]!.map((s) => s.tps));
    const offCpu = median(samples[0]!.map((s) => s.cpu));
    console.log(`batch ${batch}, ${TOKENS} tokens, ${ROUNDS} rounds, load ${(await import('node:os')).loadavg()[0]!.toFixed(2)}`);
    samples.forEach((ss, i) => {
      const m = (f: (s: Sample) => number): number => median(ss.map(f));
      const ratios = ss.map((s, j) => s.tps / samples[0]![j]!.tps);
      console.log(
        `  ${names[i]!.padEnd(4)} tok/s ${m((s) => s.tps).toFixed(0)} (÷off ${(m((s) => s.tps) / off).toFixed(3)}, per-round ${ratios.map((x) => x.toFixed(2)).join(' ')})` +
          ` cpu ${m((s) => s.cpu).toFixed(3)} s (÷off ${(m((s) => s.cpu) / offCpu).toFixed(3)})` +
          ` steps ${m((s) => s.steps)} overhead/step ${((m((s) => s.overhead) / m((s) => s.steps)) * 1000).toFixed(3)} ms` +
          ` (less draft ${((m((s) => s.overhead - s.draft) / m((s) => s.steps)) * 1000).toFixed(3)} ms)` +
          ` model/step ${((m((s) => s.model) / m((s) => s.steps)) * 1000).toFixed(2)} ms draft ${(m((s) => s.draft) * 1000).toFixed(1)} ms` +
          ` verified ${m((s) => s.verified)} catchUp ${m((s) => s.catchUp)}` +
          ` main cpu/step ${((m((s) => s.busy) / m((s) => s.steps)) * 1000).toFixed(3)} ms` +
          ` thread step median ${(m((s) => s.stepMedian) * 1000).toFixed(2)} ms mean ${(m((s) => s.stepMean) * 1000).toFixed(2)} ms` +
          ` (÷off ${(m((s) => s.stepMedian) / median(samples[0]!.map((s) => s.stepMedian))).toFixed(3)} / ${(m((s) => s.stepMean) / median(samples[0]!.map((s) => s.stepMean))).toFixed(3)})`,
      );
    });
  }
  for (const e of engines) await e.close();
}

await main();
