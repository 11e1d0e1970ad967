// One process serving the OpenAI API over the real engine and the tiny model: the official client works,
// greedy output through HTTP equals the reference loop, and bad input never leaks KV blocks.
import { connect } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiServer, silentLogger, type ApiServer } from '@pdserve/api';
import { LLMEngine } from '@pdserve/engine';
import { ensureTinyModel, loadModelSpec, ModelRunner, referenceGenerate, samplingParams } from '@pdserve/model';
import { Tokenizer } from '@pdserve/tokenizer';
import { completion } from '@pdserve/testkit';

let engine: LLMEngine;
let api: ApiServer;
let url: string;
let client: OpenAI;
let tokenizer: Tokenizer;
let runner: ModelRunner;

beforeAll(async () => {
  const dir = await ensureTinyModel();
  tokenizer = await Tokenizer.fromDir(dir);
  engine = await LLMEngine.create({ modelDir: dir, modelId: 'tiny', maxModelLen: 1024, maxWaiting: 64 });
  runner = await ModelRunner.create(loadModelSpec(dir));
  api = createApiServer({ models: [{ id: 'tiny', engine, tokenizer, maxModelLen: engine.maxModelLen }], port: 0, logger: silentLogger });
  url = (await api.listen()).url;
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await api?.close();
  await engine?.close();
  await runner?.release();
});

async function waitIdle(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = engine.stats();
    if (s.usedBlocks === 0 && s.running === 0 && s.waiting === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`engine not idle: ${JSON.stringify(engine.stats())}`);
}

describe('the official openai client against the engine', () => {
  it('completions: greedy text equals the reference loop, with usage', async () => {
    const prompt = 'The disaggregated cluster';
    const ids = tokenizer.encode(prompt);
    const ref = await referenceGenerate(
      runner,
      ids,
      samplingParams({ temperature: 0, maxTokens: 12, stopTokenIds: tokenizer.eosTokenIds }),
    );
    const res = await client.completions.create({ model: 'tiny', prompt, max_tokens: 12, temperature: 0 });
    expect(res.choices[0]!.text).toBe(completion(tokenizer, ids, ref.tokenIds));
    expect(res.usage).toMatchObject({ prompt_tokens: ids.length, completion_tokens: ref.tokenIds.length });
  });

  it('chat: streaming and non-streaming agree, include_usage reports cached tokens on a repeat', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are a careful assistant that answers in one word. '.repeat(4) },
      { role: 'user' as const, content: 'Name a colour.' },
    ];
    const whole = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10, temperature: 0 });
    let streamed = '';
    let usage: OpenAI.CompletionUsage | undefined;
    const stream = await client.chat.completions.create({
      model: 'tiny',
      messages,
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(streamed).toBe(whole.choices[0]!.message.content);
    expect(usage?.completion_tokens).toBe(whole.usage?.completion_tokens);
    // The second request's prompt is the first one's: all its full blocks come from the prefix cache.
    expect(usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThanOrEqual(16);
  });

  it('n > 1 with a seed is reproducible, and each choice follows seed + i', async () => {
    const req = { model: 'tiny', prompt: 'Sample me', max_tokens: 8, temperature: 1, seed: 42, n: 3 };
    const a = await client.completions.create(req);
    const b = await client.completions.create(req);
    expect(a.choices.map((c) => c.text)).toEqual(b.choices.map((c) => c.text));
    expect(new Set(a.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    const ids = tokenizer.encode('Sample me');
    const ref = await referenceGenerate(
      runner,
      ids,
      samplingParams({ temperature: 1, seed: 43, maxTokens: 8, stopTokenIds: tokenizer.eosTokenIds }),
    );
    expect(a.choices[1]!.text).toBe(completion(tokenizer, ids, ref.tokenIds));
  });

  it('stop strings end the text before the stop string', async () => {
    const full = await client.completions.create({ model: 'tiny', prompt: 'Stop somewhere', max_tokens: 16, temperature: 0 });
    const text = full.choices[0]!.text;
    const stop = text.slice(6, 9);
    const res = await client.completions.create({ model: 'tiny', prompt: 'Stop somewhere', max_tokens: 16, temperature: 0, stop: [stop] });
    expect(res.choices[0]!.text).toBe(text.slice(0, text.indexOf(stop)));
    expect(res.choices[0]!.finish_reason).toBe('stop');
    await waitIdle();
  });

  it('logprobs in both formats', async () => {
    const comp = await client.completions.create({ model: 'tiny', prompt: 'Logprobs', max_tokens: 4, temperature: 0, logprobs: 3 });
    const lp = comp.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(4);
    expect(lp.top_logprobs![0]).toBeTruthy();
    expect(Object.keys(lp.top_logprobs![0]!).length).toBeGreaterThanOrEqual(1);
    expect(lp.token_logprobs!.every((x) => x <= 0)).toBe(true);
    const chat = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(3);
    expect(content[0]!.top_logprobs).toHaveLength(2);
    // Greedy: the chosen token is the most likely one.
    expect(content[0]!.logprob).toBeCloseTo(content[0]!.top_logprobs[0]!.logprob, 5);
  });

  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny']);
  });
});

describe('bad input against the real engine', () => {
  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  const cases: [string, string, number, RegExp][] = [
    ['malformed JSON', '{"model": "tiny", "prompt": ', 400, /JSON/i],
    ['wrong type', JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: 'ten' }), 400, /max_tokens/],
    ['negative max_tokens', JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: -1 }), 400, /max_tokens/],
    ['absurd max_tokens', JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: 1e12 }), 400, /max_tokens|context/],
    ['temperature out of range', JSON.stringify({ model: 'tiny', prompt: 'x', temperature: -1 }), 400, /temperature/],
    ['unknown model', JSON.stringify({ model: 'gpt-9', prompt: 'x' }), 404, /gpt-9/],
    ['prompt past the context', JSON.stringify({ model: 'tiny', prompt: 'word '.repeat(3000), max_tokens: 4 }), 400, /context/],
    ['token id outside the vocabulary', JSON.stringify({ model: 'tiny', prompt: [1, 99999999], max_tokens: 4 }), 400, /vocab|token/i],
  ];
  for (const [name, body, status, msg] of cases) {
    it(`${name} → ${status}`, async () => {
      const res = await post('/v1/completions', body);
      expect(res.status).toBe(status);
      const err = (await res.json()) as { error: { message: string; type: string } };
      expect(err.error.message).toMatch(msg);
      expect(typeof err.error.type).toBe('string');
    });
  }

  it('empty messages → 400', async () => {
    const res = await post('/v1/chat/completions', JSON.stringify({ model: 'tiny', messages: [] }));
    expect(res.status).toBe(400);
  });

  it('a 10 MB body → 413', async () => {
    const res = await post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(10 * 1024 * 1024) }));
    expect(res.status).toBe(413);
  });

  it('a client that disconnects mid-stream frees its blocks; the server keeps serving', async () => {
    const body = JSON.stringify({ model: 'tiny', prompt: 'Keep going', max_tokens: 900, temperature: 0, stream: true, ignore_eos: true });
    const port = Number(new URL(url).port);
    await new Promise<void>((resolve, reject) => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.write(
          `POST /v1/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      });
      let seen = 0;
      sock.on('data', (d) => {
        seen += (d.toString().match(/data: /g) ?? []).length;
        if (seen >= 5) {
          sock.destroy();
          resolve();
        }
      });
      sock.on('error', reject);
    });
    await waitIdle();
    const ok = await client.completions.create({ model: 'tiny', prompt: 'Still here', max_tokens: 3, temperature: 0 });
    expect(ok.choices[0]!.text.length).toBeGreaterThan(0);
    await waitIdle();
  });
});
