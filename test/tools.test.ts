// Tool calling with the official openai client in `serve` and in the disaggregated cluster, on the tiny
// model's random weights: tool_choice required and named are grammar-constrained, so every call names an
// offered tool and its arguments validate against that tool's parameters (ajv), streamed and whole.
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionTool } from 'openai/resources';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { startDisaggregated, startServe, waitIdle, type Topology } from './lib/topologies';

const topologies: Topology[] = [];
const ajv = new Ajv2020({ strict: false });

beforeAll(async () => {
  const dir = await ensureTinyModel();
  const tokenizer = await Tokenizer.fromDir(dir);
  topologies.push(await startServe(dir, tokenizer), await startDisaggregated(dir));
}, 120_000);
afterAll(async () => {
  await Promise.all(topologies.map((t) => t.close()));
});

const tools: ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['C', 'F'] } },
        required: ['city', 'unit'],
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'add',
      parameters: {
        type: 'object',
        properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } },
        required: ['a', 'b'],
      },
    },
  },
];
const paramsOf = (name: string): object =>
  (tools.find((t) => t.type === 'function' && t.function.name === name)! as { function: { parameters: object } }).function.parameters;

interface Call {
  readonly name: string;
  readonly arguments: string;
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<{ calls: Call[]; finish: string | null; content: string }> {
  const calls: { name: string; arguments: string }[] = [];
  let finish: string | null = null;
  let content = '';
  for await (const c of stream) {
    const ch = c.choices[0];
    if (ch === undefined) continue;
    content += ch.delta.content ?? '';
    for (const d of ch.delta.tool_calls ?? []) {
      if (calls[d.index] === undefined) calls[d.index] = { name: d.function!.name!, arguments: d.function?.arguments ?? '' };
      else calls[d.index]!.arguments += d.function?.arguments ?? '';
    }
    finish = ch.finish_reason ?? finish;
  }
  return { calls, finish, content };
}

function expectValid(calls: readonly Call[]): void {
  expect(calls.length).toBeGreaterThan(0);
  for (const c of calls) {
    expect(['get_weather', 'add']).toContain(c.name);
    const args: unknown = JSON.parse(c.arguments);
    expect(ajv.validate(paramsOf(c.name), args), `${c.name}(${c.arguments}) ${JSON.stringify(ajv.errors)}`).toBe(true);
  }
}

const wholeCalls = (res: OpenAI.ChatCompletion): Call[] =>
  (res.choices[0]!.message.tool_calls ?? []).map((c) => (c.type === 'function' ? c.function : { name: '', arguments: '' }));

describe.each(['serve', 'disaggregated'] as const)('%s', (name) => {
  const topo = (): Topology => topologies.find((t) => t.name === name)!;
  const client = (): OpenAI => new OpenAI({ baseURL: `${topo().url}/v1`, apiKey: 'x', maxRetries: 0 });
  const messages = [{ role: 'user' as const, content: 'What is the weather in Paris, and 2 + 3?' }];

  it.each([undefined, 1, 2, 3])('required (seed %s): valid calls of offered tools, finish_reason tool_calls', async (seed) => {
    const body = {
      model: 'tiny',
      messages,
      tools,
      tool_choice: 'required' as const,
      max_tokens: 600,
      temperature: seed === undefined ? 0 : 1,
      seed,
    };
    const res = await client().chat.completions.create(body);
    expect(res.choices[0]!.finish_reason).toBe('tool_calls');
    expectValid(wholeCalls(res));
    const streamed = await collect(await client().chat.completions.create({ ...body, stream: true }));
    expect(streamed.finish).toBe('tool_calls');
    expectValid(streamed.calls);
    if (seed === undefined) expect(streamed.calls).toEqual(wholeCalls(res));
    await waitIdle(topo());
  });

  it.each([undefined, 4, 5])('named (seed %s): one call of that tool, arguments valid, streamed as deltas', async (seed) => {
    const body = {
      model: 'tiny',
      messages,
      tools,
      tool_choice: { type: 'function' as const, function: { name: 'get_weather' } },
      max_tokens: 300,
      temperature: seed === undefined ? 0 : 1,
      seed,
    };
    const res = await client().chat.completions.create(body);
    const calls = wholeCalls(res);
    expect(calls.map((c) => c.name)).toEqual(['get_weather']);
    expectValid(calls);
    const streamed = await collect(await client().chat.completions.create({ ...body, stream: true }));
    expect(streamed).toMatchObject({ finish: 'tool_calls', content: '' });
    expectValid(streamed.calls);
    expect(streamed.calls.map((c) => c.name)).toEqual(['get_weather']);
  });

  it('auto on a model that writes no tool syntax: text, finish_reason stop or length', async () => {
    const res = await client().chat.completions.create({ model: 'tiny', messages, tools, max_tokens: 8, temperature: 0 });
    expect(['stop', 'length']).toContain(res.choices[0]!.finish_reason);
    expect(res.choices[0]!.message.tool_calls ?? []).toEqual([]);
  });
});

describe('the correctness contract under a tool grammar', () => {
  it('greedy required and named calls are the same in serve and in the disaggregated cluster', async () => {
    const outs = await Promise.all(
      topologies.map(async (t) => {
        const c = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: 'x', maxRetries: 0 });
        const messages = [{ role: 'user' as const, content: 'Same calls everywhere' }];
        const required = await c.chat.completions.create({
          model: 'tiny',
          messages,
          tools,
          tool_choice: 'required',
          max_tokens: 600,
          temperature: 0,
        });
        const named = await c.chat.completions.create({
          model: 'tiny',
          messages,
          tools,
          tool_choice: { type: 'function', function: { name: 'add' } },
          max_tokens: 300,
          temperature: 0,
        });
        return [...wholeCalls(required), ...wholeCalls(named)];
      }),
    );
    expect(outs[0]!.length).toBeGreaterThan(1);
    expect(outs[1]).toEqual(outs[0]);
  });
});
