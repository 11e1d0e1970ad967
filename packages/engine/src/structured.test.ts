// Structured output through the engine with the tiny model's random weights: whatever the weights
// prefer, the grammar's mask makes every output parse and validate against its schema.
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureTinyModel,
  loadModelSpec,
  ModelRunner,
  referenceGenerate,
  samplingParams,
  type SamplingParams,
  type StructuredOutput,
} from '@pdserve/model';
import { JSON_SCHEMA_CASES } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { EngineError, LLMEngine, type GenerateOutput, type PrefilledKv } from './index';

let dir: string;
let engine: LLMEngine;
let tokenizer: Tokenizer;
const ajv = new Ajv2020({ strict: false });

beforeAll(async () => {
  dir = await ensureTinyModel();
  engine = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', maxNumSeqs: 32 });
  tokenizer = await Tokenizer.fromDir(dir);
});
afterAll(async () => {
  await engine?.close();
});

function prompt(seed: number, len = 12): number[] {
  return [1, ...Array.from({ length: len - 1 }, (_, i) => 3 + ((seed * 7919 + i * 104729) % 31000))];
}

async function drain(it: AsyncIterable<GenerateOutput>): Promise<{ tokens: number[]; finish?: string }> {
  const tokens: number[] = [];
  let finish: string | undefined;
  for await (const o of it) {
    tokens.push(...o.tokenIds);
    finish = o.finishReason ?? finish;
  }
  return { tokens, finish };
}

function run(e: LLMEngine, p: number[], sampling: SamplingParams, id = 'r'): Promise<{ tokens: number[]; finish?: string }> {
  return drain(e.generate({ requestId: id, promptTokenIds: p, sampling }));
}

const schemaOf = (schema: Record<string, unknown>): StructuredOutput => ({ kind: 'json_schema', schema });
const seeded = (seed: number, so: StructuredOutput): SamplingParams =>
  samplingParams({ temperature: 1, seed, maxTokens: 400, structuredOutput: so });

describe('every output parses and validates', () => {
  for (const { name, schema } of JSON_SCHEMA_CASES) {
    it(name, async () => {
      const validate = ajv.compile(schema);
      const runs = [
        samplingParams({ temperature: 0, maxTokens: 400, structuredOutput: schemaOf(schema) }),
        ...[1, 2, 3, 4].map((s) => seeded(s, schemaOf(schema))),
      ];
      const outs = await Promise.all(runs.map((sp, i) => run(engine, prompt(i + 1), sp, `s${i}`)));
      for (const out of outs) {
        expect(out.finish).toBe('stop');
        expect(out.tokens[out.tokens.length - 1]).toBe(2); // EOS, allowed only once the value is complete
        const text = tokenizer.decode(out.tokens);
        const value: unknown = JSON.parse(text);
        expect(validate(value), `${text} ${JSON.stringify(validate.errors)}`).toBe(true);
      }
    });
  }

  it('json_object', async () => {
    // Free JSON has unbounded strings and nesting: random weights may wander past any max_tokens, so
    // a bias toward closing tokens keeps the runs short. Validity is the mask's doing either way.
    const logitBias = Object.fromEntries(['"', '}', '"}', '}}', '":', ']', '"]', '}]'].map((t) => [tokenizer.tokenToId(t)!, 20]));
    const outs = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((s) => run(engine, prompt(s + 10), { ...seeded(s, { kind: 'json_object' }), logitBias }, `o${s}`)),
    );
    for (const out of outs) {
      expect(out.finish, JSON.stringify(tokenizer.decode(out.tokens)).slice(0, 300)).toBe('stop');
      const value: unknown = JSON.parse(tokenizer.decode(out.tokens));
      expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
    }
    expect(outs.some((o) => o.tokens.length > 4)).toBe(true); // not all "{}"
  });
});

describe('in a batch', () => {
  it('constrained and unconstrained sequences together: each as it is alone, unconstrained ones equal the reference', async () => {
    const runner = await ModelRunner.create(loadModelSpec(dir));
    try {
      const so = schemaOf(JSON_SCHEMA_CASES[0]!.schema);
      const plain = samplingParams({ temperature: 0, maxTokens: 24, ignoreEos: true });
      const prompts = Array.from({ length: 12 }, (_, i) => prompt(100 + i, 5 + 3 * i));
      const params = prompts.map((_, i) =>
        i % 2 === 0 ? plain : i % 4 === 1 ? seeded(i, so) : samplingParams({ temperature: 0, maxTokens: 200, structuredOutput: so }),
      );
      const alone: number[][] = [];
      for (let i = 0; i < prompts.length; i++) alone.push((await run(engine, prompts[i]!, params[i]!)).tokens);
      const together = await Promise.all(prompts.map((p, i) => run(engine, p, params[i]!, `b${i}`)));
      expect(together.map((o) => o.tokens)).toEqual(alone);
      for (let i = 0; i < prompts.length; i += 2)
        expect(alone[i]).toEqual([...(await referenceGenerate(runner, prompts[i]!, plain)).tokenIds]);
      // The grammar changed the constrained ones: a random model alone never writes this JSON.
      expect(tokenizer.decode(alone[1]!)).toMatch(/^\{"id": /);
      expect(engine.stats().usedBlocks).toBe(0);
    } finally {
      await runner.release();
    }
  });

  it('the same seed gives the same output', async () => {
    const so = schemaOf(JSON_SCHEMA_CASES[2]!.schema);
    const a = await run(engine, prompt(7), seeded(42, so));
    const b = await run(engine, prompt(7), seeded(42, so));
    const c = await run(engine, prompt(7), seeded(43, so));
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
  });

  it('max_tokens before the value is complete ends with length (output truncated, as vLLM)', async () => {
    const out = await run(
      engine,
      prompt(3),
      samplingParams({ temperature: 0, maxTokens: 5, structuredOutput: schemaOf(JSON_SCHEMA_CASES[1]!.schema) }),
    );
    expect(out.finish).toBe('length');
    expect(out.tokens).toHaveLength(5);
    expect(() => JSON.parse(tokenizer.decode(out.tokens))).toThrow();
  });

  it('masks are counted, and cost well under a millisecond per step on this vocabulary', () => {
    const s = engine.structuredOutputStats();
    expect(s.masks).toBeGreaterThan(100);
    expect(s.compiles).toBeGreaterThanOrEqual(JSON_SCHEMA_CASES.length);
  });
});

describe('refused up front', () => {
  it('an unsupported schema is an invalid_request naming the part, and holds no blocks', async () => {
    const bad = schemaOf({ type: 'object', properties: { email: { type: 'string', format: 'email' } } });
    const err = await run(engine, prompt(1), samplingParams({ maxTokens: 10, structuredOutput: bad })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('invalid_request');
    expect((err as EngineError).param).toBe('response_format');
    expect((err as EngineError).message).toMatch(/#\/properties\/email: the keyword "format" is not supported/);
    expect(engine.stats().usedBlocks).toBe(0);
  });

  it('a schema nested past the stack (as from a direct gRPC caller) is an invalid_request too, not an internal error', async () => {
    const deep = JSON.parse('{"properties": {"a": '.repeat(20_000) + '{}' + '}}'.repeat(20_000)) as Record<string, unknown>;
    const err = await run(engine, prompt(2), samplingParams({ maxTokens: 10, structuredOutput: schemaOf(deep) })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('invalid_request');
    expect((err as EngineError).message).toMatch(/nested too deeply/);
    expect(engine.stats().usedBlocks).toBe(0);
  });

  it('a bad logit_bias is an invalid_request', async () => {
    const err = await run(engine, prompt(1), samplingParams({ maxTokens: 10, logitBias: { 99999: 5 } })).catch((e: unknown) => e);
    expect((err as EngineError).code).toBe('invalid_request');
  });
});

describe('prefilled on one engine, decoded on another', () => {
  it('the decode side rebuilds the grammar from the first token and continues to the same output', async () => {
    const decode = await LLMEngine.create({ modelDir: dir, modelId: 'tiny' });
    try {
      const so = schemaOf(JSON_SCHEMA_CASES[4]!.schema);
      for (const sampling of [samplingParams({ temperature: 0, maxTokens: 300, structuredOutput: so }), seeded(9, so)]) {
        const tokens = prompt(21, 37);
        const local = await run(engine, tokens, sampling);
        const pre: GenerateOutput[] = [];
        for await (const o of engine.generate({
          requestId: 'p',
          promptTokenIds: tokens,
          sampling: { ...sampling, maxTokens: 1 },
          exportKv: { fromBlock: 0 },
        }))
          pre.push(o);
        const last = pre[pre.length - 1]!;
        const first = pre.find((o) => o.tokenIds.length > 0)!;
        const prefilled: PrefilledKv = {
          fromBlock: 0,
          blocks: last.kv!.blocks,
          firstToken: { tokenId: first.tokenIds[0]!, logprob: 0 },
          rngState: last.kv!.rngState,
          cachedTokens: 0,
        };
        const remote = await drain(decode.generate({ requestId: 'd', promptTokenIds: tokens, sampling, prefilled }));
        expect(remote.tokens).toEqual(local.tokens);
        expect(remote.finish).toBe('stop');
      }
      expect(decode.stats().usedBlocks).toBe(0);
    } finally {
      await decode.close();
    }
  });
});
