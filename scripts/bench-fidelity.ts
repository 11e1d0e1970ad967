// The simulator's fidelity on the slice test/sim-fidelity.test.ts runs (test/lib/fidelity.ts): prefix hit
// rate and mean TTFT, real cluster against simulator with a cost model calibrated just before. The test
// checks the hit rates; the TTFT error (within 30% on an idle machine) is measured here:
//
//   node --import tsx scripts/bench-fidelity.ts
//
// At a real model's size (issue 19: hit rate within 10%, mean TTFT within 25%), on a smaller slice that
// finishes in minutes (FIDELITY_AT_PRESET: 64 requests, ≤64-token prompts, 4 output tokens):
//
//   node --import tsx scripts/bench-fidelity.ts --preset qwen2.5-0.5b
import { parseArgs } from 'node:util';
import { PRESETS, type PresetName } from '@pdserve/model';
import { FIDELITY_AT_PRESET, fidelityErrors, runFidelity } from '../test/lib/fidelity';
import { machine } from './lib/stats';

const { values } = parseArgs({ options: { preset: { type: 'string' } } });
const preset = values.preset as PresetName | undefined;
if (preset !== undefined && !(preset in PRESETS))
  throw new Error(`--preset: unknown ${preset} (known: ${Object.keys(PRESETS).join(', ')})`);
const bounds = preset === undefined ? { hit: 0.15, ttft: 0.3 } : { hit: 0.1, ttft: 0.25 };
const t0 = performance.now();
const f = await runFidelity(preset);
const { hitError, ttftError, line } = fidelityErrors(f);
const within = (x: number, bound: number): string => `${x <= bound ? 'within' : 'NOT within'} ${bound * 100}%`;
if (preset !== undefined) {
  const { slice, shape } = FIDELITY_AT_PRESET;
  process.stdout.write(
    `${preset}: records ${slice.from}–${slice.from + slice.count - 1}, prompts ≤ ${shape.maxInputLen} tokens, ≤ ${shape.maxTokens} output tokens, time × ${shape.timeScale}; ${f.real.counts.completed}/${f.real.counts.sent} completed\n`,
  );
}
const k = f.cost;
process.stdout.write(
  `cost model (calibrated just before): prefill ${(k.prefillSecondsPerToken * 1e6).toFixed(1)} µs/token + ${(k.prefillSecondsPerTokenPair * 1e9).toFixed(1)} ns/token pair + ${(k.prefillStepSeconds * 1e3).toFixed(1)} ms/step; ` +
    `decode step ${(k.decodeStep.baseSeconds * 1e3).toFixed(1)} ms + ${(k.decodeStep.perSequenceSeconds * 1e3).toFixed(2)} ms/sequence + ${(k.decodeStep.perContextTokenSeconds * 1e9).toFixed(1)} ns/context token; ` +
    `request overhead ${(k.requestOverheadSeconds * 1e3).toFixed(1)} ms\n`,
);
if (preset !== undefined) {
  // Where the hit rates part: each request whose cached prompt tokens differ between the two sides.
  const sim = new Map((f.sim.perRequest ?? []).map((r) => [r.index, r]));
  const differ = f.real.requests.filter((r) => r.cachedTokens !== (sim.get(r.index)?.cachedTokens ?? null));
  for (const r of differ) {
    const s = sim.get(r.index);
    process.stdout.write(
      `  request ${r.index}: prompt ${r.promptTokens} (expected ${r.expectedPromptTokens}), cached real ${r.cachedTokens ?? '—'} sim ${s?.cachedTokens ?? '—'}, TTFT real ${r.ttftMs?.toFixed(0) ?? '—'} sim ${s?.ttftMs.toFixed(0) ?? '—'} ms, sim worker ${s?.decodeWorker ?? '—'}\n`,
    );
    const d = f.realRoutes[r.index];
    if (d !== undefined)
      process.stdout.write(
        `    real route: ${d.decodeWorker} (${d.reason}); ${d.candidates
          .map(
            (c) =>
              `${c.worker} ${Object.entries(c.terms)
                .map(([k, v]) => `${k}=${Number(v.toFixed(2))}`)
                .join(' ')}`,
          )
          .join(' | ')}\n`,
      );
  }
  process.stdout.write(
    `${differ.length} of ${f.real.requests.length} requests cached a different number of prompt tokens than simulated\n`,
  );
}
process.stdout.write(
  `${line}\n${machine()}\nprefix hit rate ${within(hitError, bounds.hit)}, mean TTFT ${within(ttftError, bounds.ttft)} of the real run's (calibration + run: ${((performance.now() - t0) / 1000).toFixed(0)} s).\n`,
);
process.exit(0);
