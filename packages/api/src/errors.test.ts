// Bad input, refusals, failures and disconnects, over raw HTTP.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineError } from './deps';
import { createLogger } from '@pdserve/log';
import { startTestServer, ToyTokenizer, type FakeEngineOptions, type TestServer } from './testing';

const tok = new ToyTokenizer();
const words = (text: string): number[] => tok.encode(text, { addSpecialTokens: false });

let s: TestServer;
afterEach(async () => {
  await s?.api.close();
});

async function setup(
  engine: FakeEngineOptions = { reply: () => words(' Hello world!') },
  server: Parameters<typeof startTestServer>[1] = {},
): Promise<TestServer> {
  s = await startTestServer(engine, server);
  return s;
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${s.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

interface ErrorJson {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string | null };
}

async function expectError(res: Response, status: number, match: Partial<ErrorJson['error']> = {}): Promise<ErrorJson['error']> {
  const body = (await res.json()) as ErrorJson;
  expect({ status: res.status, ...body.error }).toMatchObject({ status, ...match });
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  return body.error;
}

const chat = { model: 'toy', messages: [{ role: 'user', content: 'Hi' }] };
const completion = { model: 'toy', prompt: 'Hi' };

describe('bad input', () => {
  it('rejects malformed JSON and non-object bodies', async () => {
    await setup();
    await expectError(await post('/v1/chat/completions', '{"model": "toy",'), 400, { type: 'invalid_request_error', code: 'invalid_json' });
    await expectError(await post('/v1/chat/completions', ''), 400, { code: 'invalid_json' });
    await expectError(await post('/v1/completions', [1, 2]), 400, { type: 'invalid_request_error' });
    await expectError(await post('/v1/completions', 'null'), 400, { type: 'invalid_request_error' });
  });

  const cases: readonly [string, string, Record<string, unknown>, string][] = [
    // [name, path, body, param]
    ['temperature as a string', 'chat', { ...chat, temperature: 'hot' }, 'temperature'],
    ['max_tokens as a string', 'completions', { ...completion, max_tokens: '5' }, 'max_tokens'],
    ['messages as a string', 'chat', { model: 'toy', messages: 'hi' }, 'messages'],
    ['stream as a string', 'chat', { ...chat, stream: 'yes' }, 'stream'],
    ['stop as a number', 'completions', { ...completion, stop: 5 }, 'stop'],
    ['too many stops', 'completions', { ...completion, stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }, 'stop'],
    ['n fractional', 'chat', { ...chat, n: 1.5 }, 'n'],
    ['model as a number', 'chat', { ...chat, model: 3 }, 'model'],
    ['seed as a float', 'chat', { ...chat, seed: 0.5 }, 'seed'],
    ['logprobs as a number in chat', 'chat', { ...chat, logprobs: 3 }, 'logprobs'],
    ['logprobs as a boolean in completions', 'completions', { ...completion, logprobs: true }, 'logprobs'],
    ['max_tokens 0', 'completions', { ...completion, max_tokens: 0 }, 'max_tokens'],
    ['max_tokens negative', 'chat', { ...chat, max_tokens: -1 }, 'max_tokens'],
    ['max_completion_tokens 0', 'chat', { ...chat, max_completion_tokens: 0 }, 'max_completion_tokens'],
    ['temperature negative', 'chat', { ...chat, temperature: -1 }, 'temperature'],
    ['temperature above 2', 'chat', { ...chat, temperature: 2.5 }, 'temperature'],
    ['top_p 0', 'chat', { ...chat, top_p: 0 }, 'top_p'],
    ['top_p above 1', 'completions', { ...completion, top_p: 1.5 }, 'top_p'],
    ['top_k below -1', 'completions', { ...completion, top_k: -2 }, 'top_k'],
    ['min_p above 1', 'completions', { ...completion, min_p: 2 }, 'min_p'],
    ['presence_penalty 5', 'chat', { ...chat, presence_penalty: 5 }, 'presence_penalty'],
    ['repetition_penalty 0', 'chat', { ...chat, repetition_penalty: 0 }, 'repetition_penalty'],
    ['n 0', 'chat', { ...chat, n: 0 }, 'n'],
    ['n 1000', 'completions', { ...completion, n: 1000 }, 'n'],
    ['logprobs 21', 'completions', { ...completion, logprobs: 21 }, 'logprobs'],
    ['top_logprobs 50', 'chat', { ...chat, logprobs: true, top_logprobs: 50 }, 'top_logprobs'],
    ['top_logprobs without logprobs', 'chat', { ...chat, top_logprobs: 2 }, 'top_logprobs'],
    ['empty messages', 'chat', { model: 'toy', messages: [] }, 'messages'],
    ['missing messages', 'chat', { model: 'toy' }, 'messages'],
    ['unknown role', 'chat', { model: 'toy', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    ['message without content', 'chat', { model: 'toy', messages: [{ role: 'user' }] }, 'messages[0].content'],
    [
      'image content part',
      'chat',
      { model: 'toy', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
      'messages[0].content[0].type',
    ],
    ['message not an object', 'chat', { model: 'toy', messages: ['hi'] }, 'messages[0]'],
    ['empty prompt', 'completions', { model: 'toy', prompt: '' }, 'prompt'],
    ['empty prompt array', 'completions', { model: 'toy', prompt: [] }, 'prompt'],
    ['missing prompt', 'completions', { model: 'toy' }, 'prompt'],
    ['negative token id', 'completions', { model: 'toy', prompt: [1, -2] }, 'prompt'],
    ['token id out of vocabulary', 'completions', { model: 'toy', prompt: [1, 999999] }, 'prompt'],
    ['mixed prompt array', 'completions', { model: 'toy', prompt: ['a', 1] }, 'prompt'],
    ['stop_token_ids out of vocabulary', 'chat', { ...chat, stop_token_ids: [123456] }, 'stop_token_ids'],
    ['logit_bias key out of vocabulary', 'chat', { ...chat, logit_bias: { '999999': 10 } }, 'logit_bias'],
    ['logit_bias value above 100', 'chat', { ...chat, logit_bias: { '5': 101 } }, 'logit_bias'],
    ['min_tokens above max_tokens', 'chat', { ...chat, max_tokens: 2, min_tokens: 3 }, 'min_tokens'],
    ['include_stop_str_in_output', 'chat', { ...chat, include_stop_str_in_output: true }, 'include_stop_str_in_output'],
    ['skip_special_tokens false', 'completions', { ...completion, skip_special_tokens: false }, 'skip_special_tokens'],
    ['truncate_prompt_tokens', 'completions', { ...completion, truncate_prompt_tokens: 5 }, 'truncate_prompt_tokens'],
    ['guided_regex', 'completions', { ...completion, guided_regex: 'a+' }, 'guided_regex'],
    ['structured_outputs.choice', 'chat', { ...chat, structured_outputs: { choice: ['a', 'b'] } }, 'structured_outputs.choice'],
    [
      'guided_json together with response_format',
      'chat',
      { ...chat, guided_json: { type: 'object' }, response_format: { type: 'json_object' } },
      'guided_json',
    ],
    ['guided_json with an unsupported schema', 'chat', { ...chat, guided_json: { type: 'string', format: 'uri' } }, 'guided_json'],
    ['response_format of an unknown type', 'chat', { ...chat, response_format: { type: 'xml' } }, 'response_format.type'],
    [
      'response_format with an unsupported schema',
      'chat',
      {
        ...chat,
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'x', schema: { type: 'object', properties: { a: { oneOf: [{ type: 'string' }] } } } },
        },
      },
      'response_format',
    ],
    ['tools on completions', 'completions', { ...completion, tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    ['prompt_logprobs above 20', 'completions', { ...completion, prompt_logprobs: 21 }, 'prompt_logprobs'],
    ['stream_options without stream', 'chat', { ...chat, stream_options: { include_usage: true } }, 'stream_options'],
  ];

  it.each(cases)('400 for %s', async (_name, path, body, param) => {
    await setup();
    const err = await expectError(await post(`/v1/${path === 'chat' ? 'chat/completions' : 'completions'}`, body), 400, {
      type: 'invalid_request_error',
    });
    expect(err.param).toBe(param);
    expect(s.engine.requests).toHaveLength(0);
  });

  it('400 for a schema nested 20,000 deep (JSON.parse takes it; nothing downstream recurses along it)', async () => {
    await setup();
    const deep = '{"type": "object", "properties": {"a": '.repeat(20_000) + '{"type": "string"}' + '}}'.repeat(20_000);
    const messages = JSON.stringify(chat.messages);
    const format = await post(
      '/v1/chat/completions',
      `{"model": "toy", "messages": ${messages}, "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": ${deep}}}}`,
    );
    expect((await expectError(format, 400, { code: 'unsupported_schema' })).param).toBe('response_format');
    const tools = await post(
      '/v1/chat/completions',
      `{"model": "toy", "messages": ${messages}, "tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": ${deep}}}]}`,
    );
    expect((await expectError(tools, 400, { code: 'unsupported_schema' })).param).toBe('tools');
    expect(s.engine.requests).toHaveLength(0);
  });

  it('400 context_length_exceeded with the numbers when prompt + max_tokens does not fit', async () => {
    await setup();
    const long = 'x'.repeat(200); // 201 tokens with BOS; the fake model's context is 128
    const e1 = await expectError(await post('/v1/completions', { model: 'toy', prompt: long }), 400, { code: 'context_length_exceeded' });
    expect(e1.message).toContain('128');
    expect(e1.message).toContain('201');
    const e2 = await expectError(await post('/v1/completions', { ...completion, max_tokens: 1e12 }), 400, {
      code: 'context_length_exceeded',
    });
    expect(e2.message).toContain(String(1e12 + 3));
    const e3 = await expectError(await post('/v1/chat/completions', { ...chat, max_tokens: 120 }), 400, {
      code: 'context_length_exceeded',
      param: 'messages',
    });
    expect(e3.message).toMatch(/maximum context length is 128 tokens.*\d+ in the messages, 120 for the completion/);
    expect(s.engine.requests).toHaveLength(0);
  });

  it('400 when the chat template refuses the messages or the model has none', async () => {
    await setup();
    await expectError(await post('/v1/chat/completions', { model: 'toy', messages: [{ role: 'user', content: 'RAISE' }] }), 400, {
      param: 'messages',
    });
    await s.api.close();
    await setup(undefined, { hasChatTemplate: false });
    await expectError(await post('/v1/chat/completions', chat), 400, { code: 'no_chat_template' });
  });

  it('404 for an unknown model and an unknown route; 405 for a wrong method', async () => {
    await setup();
    await expectError(await post('/v1/chat/completions', { ...chat, model: 'gpt-9' }), 404, { code: 'model_not_found', param: 'model' });
    await expectError(await post('/v1/nothing', {}), 404, { type: 'invalid_request_error' });
    const res = await fetch(`${s.url}/v1/completions`);
    expect(res.headers.get('allow')).toBe('POST');
    await expectError(res, 405, { code: 'method_not_allowed' });
    await expectError(await post('/health', {}), 405);
  });

  it('413 for a 10 MB body without reading it all, and keeps serving', async () => {
    await setup();
    const big = JSON.stringify({ ...completion, prompt: 'x'.repeat(10 * 1024 * 1024) });
    const res = await post('/v1/completions', big);
    await expectError(res, 413, { code: 'request_too_large' });
    // Also when the size is not declared up front (chunked upload).
    const chunked = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode('x'.repeat(1024 * 1024)));
          c.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    await expectError(chunked, 413);
    expect((await post('/v1/completions', completion)).status).toBe(200);
  });

  it('413 arrives before the client has sent the body', async () => {
    await setup();
    const sock = net.connect(Number(new URL(s.url).port), '127.0.0.1');
    const head = new Promise<string>((resolve) => {
      let got = '';
      sock.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.includes('\r\n\r\n')) resolve(got);
      });
    });
    sock.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{"model":');
    expect((await head).split('\r\n')[0]).toBe('HTTP/1.1 413 Payload Too Large');
    sock.destroy();
  });
  it('413 with Connection: close reaches a client still uploading, then the connection closes cleanly', async () => {
    await setup();
    const sock = net.connect(Number(new URL(s.url).port), '127.0.0.1');
    const body = Buffer.alloc(10 * 1024 * 1024, 0x78);
    const answer = new Promise<{ text: string; error?: string }>((resolve) => {
      let text = '';
      sock.on('data', (d: Buffer) => (text += d.toString()));
      sock.on('error', (err) => resolve({ text, error: err.message }));
      sock.on('close', () => resolve({ text }));
    });
    sock.write(
      'POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ' +
        body.length +
        '\r\n\r\n',
    );
    // The whole body, in pieces, as a client that does not read before it has sent everything would.
    for (let off = 0; off < body.length && !sock.destroyed; off += 256 * 1024) {
      if (!sock.write(body.subarray(off, off + 256 * 1024))) await new Promise((r) => (sock.once('drain', r), sock.once('close', r)));
    }
    const { text, error } = await answer;
    expect(error).toBeUndefined();
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 413 Payload Too Large');
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error.code).toBe('request_too_large');
  });
});

describe('refusals and failures', () => {
  it('429 with Retry-After when the engine queue is full, streaming or not', async () => {
    await setup();
    s.engine.refuseWith = new EngineError('queue_full', 'too many waiting requests');
    const res = await post('/v1/completions', completion);
    expect(res.headers.get('retry-after')).toBe('1');
    await expectError(res, 429, { code: 'queue_full', message: 'too many waiting requests' });
    const streamed = await post('/v1/chat/completions', { ...chat, stream: true, n: 2 });
    expect(streamed.headers.get('retry-after')).toBe('1');
    await expectError(streamed, 429);
  });

  it('503 while not ready: setReady(false), engine not ready, or the engine saying so', async () => {
    await setup();
    expect((await fetch(`${s.url}/ready`)).status).toBe(200);
    s.api.setReady(false);
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    expect((await fetch(`${s.url}/ready`)).status).toBe(503);
    await expectError(await post('/v1/chat/completions', chat), 503, { code: 'not_ready' });
    s.api.setReady(true);
    s.engine.ready = false;
    expect((await fetch(`${s.url}/ready`)).status).toBe(503);
    await expectError(await post('/v1/completions', completion), 503, { code: 'not_ready' });
    s.engine.ready = true;
    s.engine.refuseWith = new EngineError('not_ready', 'warming up');
    await expectError(await post('/v1/completions', completion), 503, { code: 'not_ready' });
    s.engine.refuseWith = undefined;
    expect((await post('/v1/completions', completion)).status).toBe(200);
  });

  it('500 for an unexpected engine failure, logged with the request id, without crashing', async () => {
    const lines: string[] = [];
    await setup({ reply: () => words(' Hello world!') }, { logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }) });
    s.engine.failAfterChunks = 1;
    const res = await post('/v1/completions', completion, { 'x-request-id': 'req-42' });
    expect(res.headers.get('x-request-id')).toBe('req-42');
    const err = await expectError(res, 500, { type: 'server_error' });
    expect(err.message).not.toContain('device lost');
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged.find((l) => l['level'] === 'error')).toMatchObject({ requestId: 'req-42', err: { message: 'device lost' } });
    s.engine.failAfterChunks = undefined;
    expect((await post('/v1/completions', completion)).status).toBe(200);
  });

  it('sends an SSE error event, then [DONE], when the engine fails mid-stream', async () => {
    await setup({ reply: () => words(' Hello world! the cat') });
    s.engine.failAfterChunks = 2;
    const res = await post('/v1/completions', { ...completion, stream: true });
    expect(res.status).toBe(200);
    const events = (await res.text()).split('\n\n').filter((e) => e !== '');
    expect(events.slice(0, 2).map((e) => (JSON.parse(e.slice(6)) as { choices: { text: string }[] }).choices[0]!.text)).toEqual([
      ' Hello',
      ' world',
    ]);
    // The error event, then the end every OpenAI stream has, so the client stops reading.
    expect(JSON.parse(events.at(-2)!.slice(6))).toMatchObject({ error: { type: 'server_error', code: 'internal_error' } });
    expect(events.at(-1)).toBe('data: [DONE]');
  });

  it('generates a request id when none (or a bad one) is sent', async () => {
    await setup();
    const a = await fetch(`${s.url}/health`);
    const b = await fetch(`${s.url}/health`, { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(a.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('client disconnect', () => {
  async function waitFor(cond: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(cond()).toBe(true);
  }

  it('aborts every engine request of a stream, and the server keeps serving', async () => {
    await setup({ endless: true, delayMs: 5 });
    const ac = new AbortController();
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ ...chat, stream: true, n: 2, max_tokens: 100 }),
      signal: ac.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    ac.abort();
    await waitFor(() => s.engine.aborted.length === 2);
    expect(s.engine.aborted.sort()).toEqual(s.engine.requests.map((r) => r.requestId).sort());
    expect(s.engine.finished).toEqual([]);
    s.engine.requests.length = 0;
    s.engine.aborted.length = 0;
    const ok = await post('/v1/completions', { ...completion, max_tokens: 3 });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { choices: { finish_reason: string }[] }).choices[0]!.finish_reason).toBe('length');
  });

  it('aborts a non-streaming request when the client goes away', async () => {
    await setup({ endless: true, delayMs: 5 });
    const ac = new AbortController();
    const pending = fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ ...completion, max_tokens: 100 }),
      signal: ac.signal,
    });
    await waitFor(() => s.engine.requests.length === 1);
    ac.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => s.engine.aborted.length === 1);
    expect(s.engine.finished).toEqual([]);
  });
});
