// vLLM's /tokenize, /detokenize and /version, and Anthropic's /v1/messages as the official
// @anthropic-ai/sdk client sees it, over a scripted engine and the toy tokenizer.
import Anthropic from '@anthropic-ai/sdk';
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
  reply: (req: GenerateRequest) => string = () => ' Hello world!',
  opts: Parameters<typeof startTestServer>[1] = {},
): Promise<TestServer> {
  current = await startTestServer({ reply: (req) => words(reply(req)), chunkSize: 2, maxModelLen: 4096, cachedTokens: 3 }, opts);
  return current;
}

const post = (s: TestServer, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('/tokenize, /detokenize, /version (vLLM shapes)', () => {
  it('tokenizes a prompt (with BOS by default) and chat messages through the template (tools too)', async () => {
    const s = await setup();
    const a = (await (await post(s, '/tokenize', { prompt: 'Hello world', return_token_strs: true })).json()) as Record<string, unknown>;
    expect(a).toEqual({ count: 3, max_model_len: 4096, tokens: tok.encode('Hello world'), token_strs: ['<bos>', 'Hello', ' world'] });
    const b = (await (await post(s, '/tokenize', { prompt: 'Hello', add_special_tokens: false })).json()) as Record<string, unknown>;
    expect(b).toMatchObject({ tokens: words('Hello'), token_strs: null });
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }];
    const c = (await (await post(s, '/tokenize', { model: 'toy', messages: [{ role: 'user', content: 'Hi' }], tools })).json()) as {
      tokens: number[];
    };
    expect(tok.decode(c.tokens)).toBe('<|system|>tools: f\n<|user|>Hi\n<|assistant|>');
  });

  it('detokenizes, keeping special tokens; bad ids are 400s', async () => {
    const s = await setup();
    expect(await (await post(s, '/detokenize', { tokens: tok.encode('Hello world') })).json()).toEqual({ prompt: '<bos>Hello world' });
    expect((await post(s, '/detokenize', { tokens: [1e9] })).status).toBe(400);
    expect((await post(s, '/detokenize', { tokens: ['a'] })).status).toBe(400);
    expect((await post(s, '/tokenize', {})).status).toBe(400);
    expect(s.engine.requests).toHaveLength(0);
  });

  it('/version answers the release; /tokenize needs the API key when keys are set, /version does not', async () => {
    const s = await setup(undefined, { apiKeys: ['sk-1'] });
    expect(await (await fetch(`${s.url}/version`)).json()).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    expect((await post(s, '/tokenize', { prompt: 'x' })).status).toBe(401);
    expect((await post(s, '/tokenize', { prompt: 'x' }, { authorization: 'Bearer sk-1' })).status).toBe(200);
  });
});

describe('/v1/messages with the official Anthropic client', () => {
  const client = (s: TestServer): Anthropic => new Anthropic({ baseURL: s.url, apiKey: 'x', maxRetries: 0 });

  it('answers a message with text content, end_turn and usage (cache reads apart); system and sampling reach the engine', async () => {
    const s = await setup();
    // temperature and top_k: older API versions' fields, which the 1.x SDK types no longer list.
    const older = { temperature: 0.5, top_k: 3 } as Record<string, unknown>;
    const msg = await client(s).messages.create({
      model: 'toy',
      max_tokens: 20,
      system: 'Be brief',
      messages: [{ role: 'user', content: 'Hi' }],
      ...older,
    });
    expect(msg).toMatchObject({
      type: 'message',
      role: 'assistant',
      model: 'toy',
      stop_reason: 'end_turn',
      stop_sequence: null,
      content: [{ type: 'text', text: ' Hello world!' }],
    });
    expect(msg.id).toMatch(/^msg_/);
    const prompt = tok.decode(s.engine.requests[0]!.promptTokenIds);
    expect(prompt).toBe('<|system|>Be brief\n<|user|>Hi\n<|assistant|>');
    expect(msg.usage).toMatchObject({ input_tokens: words(prompt).length - 3, cache_read_input_tokens: 3, output_tokens: 4 });
    expect(s.engine.requests[0]!.sampling).toMatchObject({ temperature: 0.5, topK: 3, maxTokens: 20 });
  });

  it('stop_sequences end the message with stop_reason stop_sequence; max_tokens with max_tokens', async () => {
    const s = await setup(() => ' the cat sat on the mat.');
    const a = await client(s).messages.create({
      model: 'toy',
      max_tokens: 50,
      stop_sequences: ['sat', 'mat'],
      messages: [{ role: 'user', content: 'Go' }],
    });
    expect(a).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: 'sat', content: [{ type: 'text', text: ' the cat ' }] });
    const b = await client(s).messages.create({ model: 'toy', max_tokens: 2, messages: [{ role: 'user', content: 'Go' }] });
    expect(b).toMatchObject({ stop_reason: 'max_tokens', content: [{ type: 'text', text: ' the cat' }] });
  });

  it('streams the event sequence, and the SDK assembles the same message', async () => {
    const s = await setup(() => ' Hello world!');
    const events: string[] = [];
    let text = '';
    for await (const ev of await client(s).messages.create({
      model: 'toy',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
    })) {
      events.push(ev.type);
      if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    }
    expect(text).toBe(' Hello world!');
    expect(events[0]).toBe('message_start');
    expect(events.filter((e) => e === 'content_block_start')).toHaveLength(1);
    expect(events.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    const final = await client(s)
      .messages.stream({ model: 'toy', max_tokens: 20, messages: [{ role: 'user', content: 'Hi' }] })
      .finalMessage();
    expect(final).toMatchObject({
      stop_reason: 'end_turn',
      content: [{ type: 'text', text: ' Hello world!' }],
      usage: { output_tokens: 4 },
    });
  });

  const tools: Anthropic.Tool[] = [
    {
      name: 'get_weather',
      description: 'Weather',
      input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  ];

  it('tools: the model syntax becomes tool_use blocks with stop_reason tool_use, whole and streamed', async () => {
    const s = await setup(() => 'Looking.<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>');
    const body = { model: 'toy', max_tokens: 200, tools, messages: [{ role: 'user' as const, content: 'Weather?' }] };
    const msg = await client(s).messages.create(body);
    expect(msg.stop_reason).toBe('tool_use');
    expect(msg.content).toEqual([
      { type: 'text', text: 'Looking.' },
      { type: 'tool_use', id: expect.stringMatching(/^toolu_/), name: 'get_weather', input: { city: 'Oslo' } },
    ]);
    expect(tok.decode(s.engine.requests[0]!.promptTokenIds)).toContain('tools: get_weather');
    const final = await client(s).messages.stream(body).finalMessage();
    expect(final.stop_reason).toBe('tool_use');
    expect(final.content.map((b) => (b.type === 'tool_use' ? [b.name, b.input] : [b.type, b.type === 'text' ? b.text : '']))).toEqual([
      ['text', 'Looking.'],
      ['get_weather', { city: 'Oslo' }],
    ]);
  });

  it('tool_choice tool is constrained to that tool; tool_use and tool_result turns render through the template', async () => {
    const s = await setup(() => '{"city": "Rome"}');
    const msg = await client(s).messages.create({
      model: 'toy',
      max_tokens: 100,
      tools,
      tool_choice: { type: 'tool', name: 'get_weather' },
      messages: [
        { role: 'user', content: 'Weather?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Oslo' } }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny' },
            { type: 'text', text: 'And Rome?' },
          ],
        },
      ],
    });
    expect(s.engine.requests[0]!.sampling.structuredOutput).toMatchObject({ kind: 'json_schema', schema: tools[0]!.input_schema });
    expect(msg).toMatchObject({ stop_reason: 'tool_use', content: [{ type: 'tool_use', name: 'get_weather', input: { city: 'Rome' } }] });
    const prompt = tok.decode(s.engine.requests[0]!.promptTokenIds);
    expect(prompt).toContain('<|assistant|> calls get_weather({"city":"Oslo"})');
    expect(prompt).toContain('<|tool|>[toolu_1]sunny\n<|user|>And Rome?');
  });

  it('output_config.format json_schema constrains the output as response_format does', async () => {
    const s = await setup(() => '{"ok": true}');
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
    const msg = await client(s).messages.create({
      model: 'toy',
      max_tokens: 50,
      output_config: { format: { type: 'json_schema', schema } },
      messages: [{ role: 'user', content: 'Ok?' }],
    });
    expect(s.engine.requests[0]!.sampling.structuredOutput).toMatchObject({ kind: 'json_schema', schema });
    expect(msg.content).toEqual([{ type: 'text', text: '{"ok": true}' }]);
  });

  it('count_tokens counts the rendered prompt, tools and system included, without running the engine', async () => {
    const s = await setup();
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    const plain = await client(s).messages.countTokens({ model: 'toy', system: 'Be brief', messages });
    expect(plain).toEqual({ input_tokens: words('<|system|>Be brief\n<|user|>Hi\n<|assistant|>').length });
    const withTools = await client(s).messages.countTokens({ model: 'toy', messages, tools });
    expect(withTools.input_tokens).toBe(words('<|system|>tools: get_weather\n<|user|>Hi\n<|assistant|>').length);
    expect(s.engine.requests).toHaveLength(0);
  });

  it("bad requests are 400s in Anthropic's error shape, which the SDK reads", async () => {
    const s = await setup();
    const err = await client(s)
      .messages.create({
        model: 'toy',
        max_tokens: 10,
        messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AA==' } }] }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('image') },
    });
    const missing = await post(s, '/v1/messages', { model: 'toy', messages: [{ role: 'user', content: 'x' }] });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('max_tokens') },
    });
    const unknown = await client(s)
      .messages.create({ model: 'nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect(s.engine.requests).toHaveLength(0);
  });
});
