import { writeFile } from 'node:fs/promises';
import type { CalibrationFile } from '@pdserve/bench';
import { Flags, int, type CommandSpec } from '../args';
import { calibrate } from '../calibrate';
import { countBar } from '../progress';
import { ENGINE_FLAGS, engineOptions, modelDirFrom } from './cluster';

export const calibrateCommand: CommandSpec = {
  name: 'calibrate',
  summary: "Measure the simulator's cost model on the real engine (prefill, decode steps, serving path, KV transfer) and save it.",
  usage: 'calibrate [--model DIR] --output FILE.json [--max-prompt-tokens 2048] [--reps 3] [--quick] [engine flags, e.g. --threads 1]',
  flags: {
    model: { type: 'string', help: 'Hugging Face-layout model directory (default: the built-in tiny model)' },
    'served-model-name': { type: 'string', help: 'model id (it seeds block hashes)' },
    output: { type: 'string', help: 'where to write the cost model (JSON; `pdserve simulate --cost-model FILE` reads it)', required: true },
    'max-prompt-tokens': { type: 'string', help: 'longest prompt measured', default: '2048', value: int(2) },
    reps: { type: 'string', help: 'repetitions of each prefill point (default 3; 2 with --quick)', value: int(1) },
    quick: { type: 'boolean', help: 'fewer points and smaller transfers (about 3× faster, noisier)' },
    'skip-overhead': { type: 'boolean', help: 'do not measure the serving path (gateway + gRPC) against the engine alone' },
    'skip-transfer': { type: 'boolean', help: 'do not time the transfer engine (keeps the default bandwidth)' },
    'skip-parallelism': { type: 'boolean', help: 'do not measure how many engines this host runs at full speed at once' },
    ...ENGINE_FLAGS,
  },
  async run(f: Flags) {
    const output = f.required('output');
    const { dir, id } = await modelDirFrom(f);
    const bars = new Map<string, ReturnType<typeof countBar>>();
    const t0 = performance.now();
    const result = await calibrate({
      engine: engineOptions(f, dir, id),
      maxPromptTokens: f.int('max-prompt-tokens', 2),
      reps: f.int('reps', 1),
      quick: f.bool('quick'),
      overhead: !f.bool('skip-overhead'),
      transfer: !f.bool('skip-transfer'),
      hostParallelism: !f.bool('skip-parallelism'),
      onProgress: (stage, done, total) => {
        let bar = bars.get(stage);
        if (bar === undefined) {
          for (const b of bars.values()) b.end();
          bars.clear();
          bar = countBar(`calibrate: ${stage}`);
          bars.set(stage, bar);
        }
        bar.update(done, total);
      },
    });
    for (const b of bars.values()) b.end();
    await writeFile(output, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(formatCalibration(result) + `\nwrote ${output} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  },
};

export function formatCalibration(c: CalibrationFile): string {
  const k = c.cost;
  const us = (s: number): string => `${(s * 1e6).toFixed(2)} µs`;
  const ms = (s: number): string => `${(s * 1e3).toFixed(3)} ms`;
  const q = c.quality;
  const err = (x: { meanRelativeError: number; maxRelativeError: number }): string =>
    `fit error mean ${(x.meanRelativeError * 100).toFixed(1)}%, max ${(x.maxRelativeError * 100).toFixed(1)}%`;
  return [
    `cost model of ${c.model} on ${c.machine}`,
    `  engine: block ${c.engine.blockSize}, prefill chunk ${c.engine.prefillChunkTokens}, batch tokens ${c.engine.maxBatchTokens}, max seqs ${c.engine.maxRunning}, threads ${c.engine.threads || 'auto'}`,
    `  prefill: ${us(k.prefillSecondsPerToken)}/token + ${(k.prefillSecondsPerTokenPair * 1e9).toFixed(2)} ns/token pair + ${ms(k.prefillStepSeconds)}/step, cached ${us(k.prefillSecondsPerCachedToken)}/token (${q.prefill.samples} samples, ${err(q.prefill)})`,
    `  decode step: ${ms(k.decodeStep.baseSeconds)} + ${ms(k.decodeStep.perSequenceSeconds)}/sequence + ${(k.decodeStep.perContextTokenSeconds * 1e9).toFixed(1)} ns/context token (${q.decode.samples} samples, ${err(q.decode)})`,
    `  request overhead: ${ms(k.requestOverheadSeconds)} + ${us(k.requestOverheadSecondsPerToken)}/prompt token${q.overhead ? ` (${q.overhead.samples} samples)` : ' (engine only)'}`,
    `  host parallelism: ${c.hostParallelism === null ? 'not measured' : `${c.hostParallelism.parallelism.toFixed(2)} of ${c.hostParallelism.engines} engines at full speed at once (for simulate --host-parallelism measured)`}`,
    `  transfer: ${(k.transferBytesPerSecond / 1e9).toFixed(2)} GB/s${c.samples.transferBytesPerSecond === null ? ' (default, not measured)' : ' (TCP data plane, loopback, one process)'}; KV ${k.kvBytesPerToken} bytes/token`,
  ].join('\n');
}
