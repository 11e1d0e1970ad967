// Tool calling as the official OpenAI client sees it, over a scripted engine: auto parses the model's
// syntax (streamed and whole), required and named hand the engine a grammar and turn its JSON into calls,
// tool results render through the template, and bad tool requests are 400s before any engine work.
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionTool } from 'openai/resources';
import { afterEach, describe, expect, it } from 'vitest';
import type { GenerateRequest } from './deps';
import { startTestServer, ToyTokenizer, type TestServer } from './testing';

const tok = new ToyTokenizer();
const words = (text: string): number[] => tok.encode(text, { addSpecialTokens: false });

let current: TestServer | undefined;
afterEach(async () => {
  await current?.api.close();
  current = undefined;
});

async function setup(
  reply: (req: GenerateRequest) => string,
  opts: { toolCallParser?: 'hermes' | 'llama3_json'; chunkSize?: number } = {},
): Promise<{ s: TestServer; client: OpenAI }> {
  current = await startTestServer(
    { reply: (req) => words(reply(req)), chunkSize: opts.chunkSize ?? 3, maxModelLen: 4096 },
    { toolCallParser: opts.toolCallParser },
  );
  return { s: current, client: new OpenAI({ baseURL: `${current.url}/v1`, apiKey: 'x', maxRetries: 0 }) };
}

const weather: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const time: ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { enum: ['UTC', 'CET'] } }, required: ['tz'] } },
};
const messages = [{ role: 'user' as const, content: 'Weather in Paris?' }];

/** Folds a stream into content, whole tool calls and the finish reason, as a client would. */
async function collect(stream: AsyncIterable<ChatCompletionChunk>) {
  let content = '';
  let finish: string | null = null;
  const calls: { id: string; name: string; arguments: string }[] = [];
  for await (const c of stream) {
    const ch = c.choices[0];
    if (ch === undefined) continue;
    content += ch.delta.content ?? '';
    for (const d of ch.delta.tool_calls ?? []) {
      const prev = calls[d.index];
      if (prev === undefined) calls[d.index] = { id: d.id!, name: d.function!.name!, arguments: d.function?.arguments ?? '' };
      else prev.arguments += d.function?.arguments ?? '';
    }
    finish = ch.finish_reason ?? finish;
  }
  return { content, calls, finish };
}

describe('tool_choice auto', () => {
  const hermes = 'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';

  it('hermes syntax becomes tool_calls with finish_reason tool_calls, whole and streamed', async () => {
    const { s, client } = await setup(() => hermes);
    const res = await client.chat.completions.create({ model: 'toy', messages, tools: [weather, time] });
    expect(res.choices[0]!.finish_reason).toBe('tool_calls');
    expect(res.choices[0]!.message.content).toBe('Checking.');
    const call = res.choices[0]!.message.tool_calls![0]!;
    expect(call.type).toBe('function');
    expect(call.type === 'function' && call.function).toEqual({ name: 'get_weather', arguments: '{"city":"Paris"}' });
    expect(s.engine.requests[0]!.sampling.structuredOutput).toBeUndefined();
    // The tools reach the template (the toy one lists their names).
    expect(tok.decode(s.engine.requests[0]!.promptTokenIds)).toContain('tools: get_weather,get_time');

    const streamed = await collect(await client.chat.completions.create({ model: 'toy', messages, tools: [weather, time], stream: true }));
    expect(streamed).toMatchObject({ content: 'Checking.', finish: 'tool_calls' });
    expect(streamed.calls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([['get_weather', { city: 'Paris' }]]);
    expect(streamed.calls[0]!.id).toMatch(/^call_/);
  });

  it('llama3_json syntax, when the model writes it', async () => {
    const { client } = await setup(() => '{"name": "get_time", "parameters": {"tz": "UTC"}}', { toolCallParser: 'llama3_json' });
    const res = await client.chat.completions.create({ model: 'toy', messages, tools: [weather, time] });
    expect(res.choices[0]!.finish_reason).toBe('tool_calls');
    expect(res.choices[0]!.message.content).toBeNull();
    const call = res.choices[0]!.message.tool_calls![0]!;
    expect(call.type === 'function' && call.function).toEqual({ name: 'get_time', arguments: '{"tz":"UTC"}' });
  });

  it('a reply without a call is plain content with finish_reason stop', async () => {
    const { client } = await setup(() => ' Hello world!');
    const res = await client.chat.completions.create({ model: 'toy', messages, tools: [weather] });
    expect(res.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: ' Hello world!' } });
    expect(res.choices[0]!.message.tool_calls).toBeUndefined();
  });

  it('tool_choice none: no tools rendered, the syntax stays text', async () => {
    const { s, client } = await setup(() => hermes);
    const res = await client.chat.completions.create({ model: 'toy', messages, tools: [weather], tool_choice: 'none' });
    expect(res.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: hermes } });
    expect(tok.decode(s.engine.requests[0]!.promptTokenIds)).not.toContain('tools:');
  });

  it('an assistant turn with tool calls and the tool result render through the template', async () => {
    const { s, client } = await setup(() => ' Sunny');
    await client.chat.completions.create({
      model: 'toy',
      tools: [weather],
      messages: [
        ...messages,
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"sky": "clear"}' },
      ],
    });
    const prompt = tok.decode(s.engine.requests[0]!.promptTokenIds);
    expect(prompt).toContain('<|assistant|> calls get_weather({"city":"Paris"})');
    expect(prompt).toContain('<|tool|>[call_1]{"sky": "clear"}');
  });
});

describe('tool_choice required and named: constrained', () => {
  it('named: the engine gets the tool parameters as its grammar; the output is that call, whole and streamed', async () => {
    const { s, client } = await setup(() => '{"city": "Oslo"}');
    const body = {
      model: 'toy',
      messages,
      tools: [weather, time],
      tool_choice: { type: 'function' as const, function: { name: 'get_weather' } },
    };
    const res = await client.chat.completions.create(body);
    expect(s.engine.requests[0]!.sampling.structuredOutput).toEqual({
      kind: 'json_schema',
      schema: weather.function.parameters,
      strict: true,
    });
    expect(res.choices[0]!.finish_reason).toBe('tool_calls');
    const call = res.choices[0]!.message.tool_calls![0]!;
    expect(call.type === 'function' && call.function).toEqual({ name: 'get_weather', arguments: '{"city": "Oslo"}' });
    const streamed = await collect(await client.chat.completions.create({ ...body, stream: true }));
    expect(streamed).toMatchObject({ content: '', finish: 'tool_calls', calls: [{ name: 'get_weather', arguments: '{"city": "Oslo"}' }] });
  });

  it('required: an array of calls of the offered tools, each call its own tool_calls entry', async () => {
    const { s, client } = await setup(
      () => '[{"name": "get_time", "arguments": {"tz": "CET"}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]',
    );
    const res = await client.chat.completions.create({ model: 'toy', messages, tools: [weather, time], tool_choice: 'required' });
    const so = s.engine.requests[0]!.sampling.structuredOutput;
    expect(so?.kind === 'json_schema' && so.schema).toMatchObject({
      type: 'array',
      minItems: 1,
      items: { anyOf: [{ properties: { name: { const: 'get_weather' } } }, { properties: { name: { const: 'get_time' } } }] },
    });
    expect(res.choices[0]!.finish_reason).toBe('tool_calls');
    expect(
      res.choices[0]!.message.tool_calls!.map((c) => c.type === 'function' && [c.function.name, JSON.parse(c.function.arguments)]),
    ).toEqual([
      ['get_time', { tz: 'CET' }],
      ['get_weather', { city: 'Rome' }],
    ]);
  });
});

describe('parallel_tool_calls: false', () => {
  it('keeps the first of several parsed calls, and limits required to one-item arrays', async () => {
    const two =
      '<tool_call>{"name": "get_time", "arguments": {"tz": "UTC"}}</tool_call><tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>';
    const { s, client } = await setup(() => two);
    const res = await client.chat.completions.create({ model: 'toy', messages, tools: [weather, time], parallel_tool_calls: false });
    expect(res.choices[0]!.message.tool_calls!.map((c) => c.type === 'function' && c.function.name)).toEqual(['get_time']);
    const streamed = await collect(
      await client.chat.completions.create({ model: 'toy', messages, tools: [weather, time], parallel_tool_calls: false, stream: true }),
    );
    expect(streamed.calls.map((c) => c.name)).toEqual(['get_time']);
    await client.chat.completions
      .create({ model: 'toy', messages, tools: [weather, time], tool_choice: 'required', parallel_tool_calls: false })
      .catch(() => undefined);
    const so = s.engine.requests.at(-1)!.sampling.structuredOutput;
    expect(so?.kind === 'json_schema' && so.schema).toMatchObject({ type: 'array', minItems: 1, maxItems: 1 });
  });
});

describe('bad tool requests are 400s before the engine', () => {
  const cases: readonly [string, Record<string, unknown>, string][] = [
    ['tools not an array', { tools: {} }, 'tools'],
    ['a tool of another type', { tools: [{ type: 'retrieval' }] }, 'tools[0].type'],
    ['a tool without a name', { tools: [{ type: 'function', function: {} }] }, 'tools[0].function.name'],
    ['a bad tool name', { tools: [{ type: 'function', function: { name: 'a b' } }] }, 'tools[0].function.name'],
    ['duplicate tool names', { tools: [weather, weather] }, 'tools[1].function.name'],
    ['a named choice not in tools', { tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice'],
    ['required without tools', { tool_choice: 'required' }, 'tool_choice'],
    [
      'required with a schema the engine cannot enforce',
      {
        tools: [
          {
            type: 'function',
            function: { name: 'f', parameters: { type: 'object', properties: { d: { type: 'string', format: 'date' } } } },
          },
        ],
        tool_choice: 'required',
      },
      'tools',
    ],
    [
      'required together with response_format',
      { tools: [weather], tool_choice: 'required', response_format: { type: 'json_object' } },
      'response_format',
    ],
  ];
  it.each(cases)('%s', async (_name, extra, param) => {
    const { s, client } = await setup(() => 'x');
    const err = await client.chat.completions
      .create({ model: 'toy', messages, ...extra } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
    expect(s.engine.requests).toHaveLength(0);
  });
});
