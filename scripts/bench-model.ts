// Model runner speed: decode step time at batch 1, 8, 32 with 512 tokens of past, and prefill time for
// 512 tokens — ours (ModelRunner) and transformers.js on the same files, in one run.
// Run: node --import tsx scripts/bench-model.ts        (the cached built-in model)
//      node --import tsx scripts/bench-model.ts --preset qwen2.5-0.5b --skip-peer [--past 1024] [--batches 1,8,32]
import { parseArgs } from 'node:util';
import { ensureTinyModel, kvBytesPerToken, loadModelSpec, ModelRunner, type PresetName } from '@pdserve/model';
import { loadPeer, type Peer } from './lib/peer';
import { machine, median, randomTokens, timeIt } from './lib/stats';

const { values: args } = parseArgs({
  options: {
    preset: { type: 'string' },
    past: { type: 'string', default: '512' },
    batches: { type: 'string', default: '1,8,32' },
    steps: { type: 'string', default: '8' },
    'skip-peer': { type: 'boolean', default: false },
  },
});
const PRESET = args.preset as PresetName | undefined;
const PAST = Number(args.past);
const STEPS = Number(args.steps);
const BATCHES = args.batches.split(',').map(Number);
const dir = await ensureTinyModel(PRESET ? { preset: PRESET } : {});
const spec = loadModelSpec(dir);
const VOCAB = spec.vocabSize > 150_000 ? 151_643 : spec.vocabSize;
const rssBefore = process.memoryUsage().rss;
const runner = await ModelRunner.create(spec);
const weightsRss = process.memoryUsage().rss - rssBefore;

async function oursDecode(batch: number): Promise<number> {
  const prompts = Array.from({ length: batch }, (_, b) => randomTokens(PAST, b + 1, VOCAB));
  let res = await runner.forward({ rows: prompts.map((p) => ({ tokenIds: p, pastLen: 0 })), pastWidth: 0 });
  let past = PAST;
  const times: number[] = [];
  for (let s = 0; s < STEPS; s++) {
    const rows = prompts.map(() => ({ tokenIds: [5], pastLen: past }));
    const t = await timeIt(async () => {
      res = await runner.forward({ rows, pastWidth: past, past: res.present });
    });
    times.push(t);
    past += 1;
  }
  return median(times);
}

async function oursPrefill(): Promise<number> {
  const p = randomTokens(PAST, 99, VOCAB);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) times.push(await timeIt(() => runner.forward({ rows: [{ tokenIds: p, pastLen: 0 }], pastWidth: 0 })));
  return median(times);
}

const peer: Peer | undefined = args['skip-peer'] ? undefined : await loadPeer(dir);
async function peerDecode(batch: number): Promise<number> {
  const prompts = Array.from({ length: batch }, (_, b) => randomTokens(PAST, b + 1, VOCAB));
  const one: number[] = [];
  const many: number[] = [];
  for (let i = 0; i < 3; i++) {
    one.push(await timeIt(() => peer!.generate(prompts, 1)));
    many.push(await timeIt(() => peer!.generate(prompts, 1 + STEPS)));
  }
  return (median(many) - median(one)) / STEPS;
}
async function peerPrefill(): Promise<number> {
  const p = randomTokens(PAST, 99, VOCAB);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) times.push(await timeIt(() => peer!.generate([p], 1)));
  return median(times);
}

await oursPrefill(); // warm-up
const rows: string[][] = [];
const cell = (ours: number, theirs: number | undefined): string[] => [
  (ours * 1000).toFixed(2),
  theirs === undefined ? '–' : (theirs * 1000).toFixed(2),
  theirs === undefined ? '–' : (theirs / ours).toFixed(2),
];
for (const b of BATCHES) {
  const ours = await oursDecode(b);
  const theirs = peer ? await peerDecode(b) : undefined;
  rows.push([`decode step, batch ${b}, past ${PAST}`, ...cell(ours, theirs)]);
}
const op = await oursPrefill();
const tp = peer ? await peerPrefill() : undefined;
rows.push([`prefill ${PAST} tokens, batch 1`, ...cell(op, tp)]);

const out = [
  `${PRESET ? `Preset ${PRESET}` : 'Tiny model'} (${spec.numLayers} layers, hidden ${spec.hiddenSize}, ${spec.numHeads} heads / ${spec.numKvHeads} KV heads, vocab ${spec.vocabSize}, ${(kvBytesPerToken(spec) / 1024).toFixed(0)} KiB KV per token; weights add ${(weightsRss / 2 ** 30).toFixed(2)} GiB to RSS); ${machine()}; medians.`,
  '',
  '| measurement | pdserve ModelRunner (ms) | transformers.js (ms) | transformers.js ÷ ours |',
  '| --- | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');
process.stdout.write(out + '\n');
await peer?.dispose();
await runner.release();
