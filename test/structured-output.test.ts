// response_format through the HTTP API in both topologies, with the tiny model's random weights: every
// output parses and validates against its schema (ajv), greedy output is the same in `serve` and in the
// disaggregated cluster (where the prefill worker constrains the first token and the decode worker
// rebuilds the grammar from it), and a schema the engine cannot enforce is a 400 naming the part.
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel } from '@pdserve/model';
import { JSON_SCHEMA_CASES } from '@pdserve/testkit';
import { Tokenizer } from '@pdserve/tokenizer';
import { startDisaggregated, startServe, waitIdle, type Topology } from './lib/topologies';

let tokenizer: Tokenizer;
const topologies: Topology[] = [];
const ajv = new Ajv2020({ strict: false });

beforeAll(async () => {
  const dir = await ensureTinyModel();
  tokenizer = await Tokenizer.fromDir(dir);
  topologies.push(await startServe(dir, tokenizer), await startDisaggregated(dir));
}, 120_000);
afterAll(async () => {
  await Promise.all(topologies.map((t) => t.close()));
});

const client = (t: Topology): OpenAI => new OpenAI({ baseURL: `${t.url}/v1`, apiKey: 'x', maxRetries: 0 });

describe.each(['serve', 'disaggregated'] as const)('%s', (name) => {
  const topo = (): Topology => topologies.find((t) => t.name === name)!;

  it.each(JSON_SCHEMA_CASES.map((c) => [c.name, c.schema] as const))(
    'json_schema %s: greedy and seeded outputs validate',
    async (_n, schema) => {
      const validate = ajv.compile(schema);
      const c = client(topo());
      const format = { type: 'json_schema' as const, json_schema: { name: 'out', schema, strict: true } };
      const runs = [undefined, 11, 12].map((seed) =>
        c.chat.completions.create({
          model: 'tiny',
          messages: [{ role: 'user', content: `Answer as JSON ${seed ?? ''}` }],
          max_tokens: 400,
          temperature: seed === undefined ? 0 : 1,
          seed,
          response_format: format,
        }),
      );
      for (const res of await Promise.all(runs)) {
        const text = res.choices[0]!.message.content!;
        expect(res.choices[0]!.finish_reason, text).toBe('stop');
        const value: unknown = JSON.parse(text);
        expect(validate(value), `${text} ${JSON.stringify(validate.errors)}`).toBe(true);
      }
      await waitIdle(topo());
    },
  );

  it('streamed json_schema output equals the whole response and validates', async () => {
    const { schema } = JSON_SCHEMA_CASES[0]!;
    const c = client(topo());
    const body = {
      model: 'tiny',
      messages: [{ role: 'user' as const, content: 'stream it' }],
      max_tokens: 400,
      temperature: 0,
      response_format: { type: 'json_schema' as const, json_schema: { name: 'out', schema } },
    };
    const whole = await c.chat.completions.create(body);
    let streamed = '';
    for await (const chunk of await c.chat.completions.create({ ...body, stream: true })) streamed += chunk.choices[0]?.delta.content ?? '';
    expect(streamed).toBe(whole.choices[0]!.message.content);
    expect(ajv.validate(schema, JSON.parse(streamed))).toBe(true);
  });

  it('json_object on completions: an object, under a bias toward closing tokens', async () => {
    const logitBias = Object.fromEntries(['"', '}', '"}', '}}', '":', ']', '"]', '}]'].map((t) => [String(tokenizer.tokenToId(t)!), 20]));
    const res = await client(topo()).completions.create({
      model: 'tiny',
      prompt: 'Some JSON:',
      max_tokens: 400,
      temperature: 1,
      seed: 3,
      logit_bias: logitBias,
      response_format: { type: 'json_object' },
    } as OpenAI.CompletionCreateParamsNonStreaming);
    const value: unknown = JSON.parse(res.choices[0]!.text);
    expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
  });

  it('a schema the engine cannot enforce is a 400 naming the part, before any engine work', async () => {
    const before = topo().prefillTokensComputed();
    const err = await client(topo())
      .chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'x' }],
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'bad', schema: { type: 'object', properties: { when: { type: 'string', format: 'date-time' } } } },
        },
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.param).toBe('response_format');
    expect(e.message).toMatch(/when.*format/);
    expect(topo().prefillTokensComputed()).toBe(before);
  });
});

describe('the correctness contract under a grammar', () => {
  it('greedy constrained output is the same in serve and in the disaggregated cluster', async () => {
    const prefilled = topologies.map((t) => t.prefillTokensComputed());
    const outs = await Promise.all(
      topologies.map(async (t) => {
        const texts: string[] = [];
        for (const { schema } of JSON_SCHEMA_CASES.slice(0, 4)) {
          const res = await client(t).chat.completions.create({
            model: 'tiny',
            messages: [{ role: 'user', content: 'Same everywhere' }],
            max_tokens: 400,
            temperature: 0,
            response_format: { type: 'json_schema', json_schema: { name: 's', schema } },
          });
          texts.push(res.choices[0]!.message.content!);
        }
        return texts;
      }),
    );
    expect(outs[1]).toEqual(outs[0]);
    // The cluster's prompts were prefilled (and their first tokens constrained) on the prefill worker.
    expect(topologies[1]!.prefillTokensComputed()).toBeGreaterThan(prefilled[1]!);
  });
});
