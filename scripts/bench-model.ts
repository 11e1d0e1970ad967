// Model runner speed: decode step time at batch 1, 8, 32 with 512 tokens of past, and prefill time for
// 512 tokens — ours (ModelRunner) and transformers.js on the same files, in one run.
// Run: npm run pdserve -- model tiny ... (not needed: uses the cached built-in model)
//      node --import tsx scripts/bench-model.ts
import { ensureTinyModel, loadModelSpec, ModelRunner } from '@pdserve/model';
import { loadPeer } from './lib/peer';
import { machine, median, randomTokens, timeIt } from './lib/stats';

const PAST = 512;
const STEPS = 8;
const dir = await ensureTinyModel();
const spec = loadModelSpec(dir);
const runner = await ModelRunner.create(spec);

async function oursDecode(batch: number): Promise<number> {
  const prompts = Array.from({ length: batch }, (_, b) => randomTokens(PAST, b + 1));
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
  const p = randomTokens(PAST, 99);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) times.push(await timeIt(() => runner.forward({ rows: [{ tokenIds: p, pastLen: 0 }], pastWidth: 0 })));
  return median(times);
}

const peer = await loadPeer(dir);
async function peerDecode(batch: number): Promise<number> {
  const prompts = Array.from({ length: batch }, (_, b) => randomTokens(PAST, b + 1));
  const one: number[] = [];
  const many: number[] = [];
  for (let i = 0; i < 3; i++) {
    one.push(await timeIt(() => peer.generate(prompts, 1)));
    many.push(await timeIt(() => peer.generate(prompts, 1 + STEPS)));
  }
  return (median(many) - median(one)) / STEPS;
}
async function peerPrefill(): Promise<number> {
  const p = randomTokens(PAST, 99);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) times.push(await timeIt(() => peer.generate([p], 1)));
  return median(times);
}

await oursPrefill(); // warm-up
const rows: string[][] = [];
for (const b of [1, 8, 32]) {
  const ours = await oursDecode(b);
  const theirs = await peerDecode(b);
  rows.push([`decode step, batch ${b}, past ${PAST}`, (ours * 1000).toFixed(2), (theirs * 1000).toFixed(2), (theirs / ours).toFixed(2)]);
}
const op = await oursPrefill();
const tp = await peerPrefill();
rows.push([`prefill ${PAST} tokens, batch 1`, (op * 1000).toFixed(2), (tp * 1000).toFixed(2), (tp / op).toFixed(2)]);

const out = [
  `Tiny model (${spec.numLayers} layers, hidden ${spec.hiddenSize}, ${spec.numHeads} heads / ${spec.numKvHeads} KV heads, vocab ${spec.vocabSize}); ${machine()}; medians.`,
  '',
  '| measurement | pdserve ModelRunner (ms) | transformers.js (ms) | transformers.js ÷ ours |',
  '| --- | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');
process.stdout.write(out + '\n');
await peer.dispose();
await runner.release();
