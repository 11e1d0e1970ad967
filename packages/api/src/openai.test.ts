// The API as the official OpenAI client sees it, over a fake engine and the toy tokenizer.
import OpenAI from 'openai';
import type { ChatCompletionChunk, Completion } from 'openai/resources';
import { afterEach, describe, expect, it } from 'vitest';
import { EngineError, type GenerateRequest } from './deps';
import { startTestServer, ToyTokenizer, type TestServer } from './testing';

const tok = new ToyTokenizer();
const words = (text: string): number[] => tok.encode(text, { addSpecialTokens: false });

let current: TestServer | undefined;
afterEach(async () => {
  await current?.api.close();
  current = undefined;
});

async function setup(...args: Parameters<typeof startTestServer>): Promise<{ s: TestServer; client: OpenAI }> {
  current = await startTestServer(...args);
  return { s: current, client: new OpenAI({ baseURL: `${current.url}/v1`, apiKey: 'x', maxRetries: 0 }) };
}

/** Replies differ by seed so tests can see which seed a choice used. */
const bySeed = (req: GenerateRequest): readonly number[] =>
  words(req.sampling.seed === undefined ? ' Hello world!' : ` Hello ${req.sampling.seed}`);

describe('completions', () => {
  it('returns the OpenAI shape with usage, and defaults max_tokens to 16', async () => {
    const { s, client } = await setup({ reply: () => words(' Hello world!'), cachedTokens: 2 });
    const res = await client.completions.create({ model: 'toy', prompt: 'Hi' });
    expect(res).toMatchObject({
      object: 'text_completion',
      model: 'toy',
      choices: [{ index: 0, text: ' Hello world!', logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, prompt_tokens_details: { cached_tokens: 2 } },
    });
    expect(res.id).toMatch(/^cmpl-/);
    expect(typeof res.created).toBe('number');
    const req = s.engine.requests[0]!;
    expect(req.promptTokenIds).toEqual(tok.encode('Hi'));
    expect(req.sampling).toMatchObject({ maxTokens: 16, temperature: 1, topP: 1, topK: 0, stop: [], ignoreEos: false });
  });

  it('maps sampling fields and finishes with length at max_tokens', async () => {
    const { s, client } = await setup({ reply: () => words(' Hello world!') });
    const extra: Record<string, unknown> = { top_k: 5, min_p: 0.1, repetition_penalty: 1.2, ignore_eos: true, stop_token_ids: [7] };
    const res = await client.completions.create({
      model: 'toy',
      prompt: [5, 6, 7],
      max_tokens: 2,
      temperature: 0,
      top_p: 0.9,
      seed: 7,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      ...extra,
    });
    expect(res.choices[0]).toMatchObject({ text: ' Hello world', finish_reason: 'length' });
    expect(s.engine.requests[0]!.promptTokenIds).toEqual([5, 6, 7]);
    expect(s.engine.requests[0]!.sampling).toEqual({
      temperature: 0,
      topP: 0.9,
      topK: 5,
      minP: 0.1,
      repetitionPenalty: 1.2,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      seed: 7,
      maxTokens: 2,
      stopTokenIds: [7],
      stop: [],
      ignoreEos: true,
      logprobs: undefined,
    });
  });

  it('streams text, never splitting a multi-byte character', async () => {
    const { client } = await setup({ reply: () => words(' Hello 😀 世界!') });
    const stream = await client.completions.create({ model: 'toy', prompt: 'Hi', stream: true });
    const texts: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('text_completion');
      const c = chunk.choices[0]!;
      texts.push(c.text);
      finish = c.finish_reason ?? finish;
    }
    expect(texts.join('')).toBe(' Hello 😀 世界!');
    for (const t of texts) expect(t).not.toContain('\uFFFD');
    expect(finish).toBe('stop');
  });

  it('runs n choices as separate engine requests with seed + i, for every prompt', async () => {
    const { s, client } = await setup({ reply: bySeed });
    const res = await client.completions.create({ model: 'toy', prompt: ['a', 'b'], n: 2, seed: 10 });
    expect(res.choices.map((c) => [c.index, c.text])).toEqual([
      [0, ' Hello 10'],
      [1, ' Hello 11'],
      [2, ' Hello 10'],
      [3, ' Hello 11'],
    ]);
    expect(s.engine.requests.map((r) => r.sampling.seed).sort()).toEqual([10, 10, 11, 11]);
    // The prompt is counted once per prompt, completions per choice.
    expect(res.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 4 * words(' Hello 10').length + 4 });
  });

  it('stops at a stop string split across tokens and aborts the engine request', async () => {
    const { s, client } = await setup({ reply: () => words(' Hello world! the cat sat on the mat.') });
    const res = await client.completions.create({ model: 'toy', prompt: 'Hi', stop: ['zzz', 'ld! th'], max_tokens: 50 });
    expect(res.choices[0]).toMatchObject({ text: ' Hello wor', finish_reason: 'stop' });
    expect(s.engine.aborted).toEqual([s.engine.requests[0]!.requestId]);
    expect(s.engine.requests[0]!.sampling.stop).toEqual(['zzz', 'ld! th']);
  });

  it('stops on a stop string inside a multi-byte character sequence while streaming', async () => {
    const { client } = await setup({ reply: () => words(' Hello 😀 world') });
    const stream = await client.completions.create({ model: 'toy', prompt: 'Hi', stop: '😀', stream: true });
    const chunks: Completion['choices'][number][] = [];
    for await (const chunk of stream) chunks.push(chunk.choices[0]!);
    expect(chunks.map((c) => c.text).join('')).toBe(' Hello ');
    expect(chunks.at(-1)!.finish_reason).toBe('stop');
  });

  it('returns legacy logprobs', async () => {
    const { client } = await setup({ reply: () => words(' Hello world') });
    const res = await client.completions.create({ model: 'toy', prompt: 'Hi', logprobs: 2 });
    const lp = res.choices[0]!.logprobs!;
    expect(lp.tokens).toEqual([' Hello', ' world', '<eos>']);
    expect(lp.token_logprobs).toEqual([-0.5, -0.5, -0.5]);
    expect(lp.text_offset).toEqual([0, 6, 12]);
    expect(lp.top_logprobs![0]).toEqual({ ' Hello': -0.5, [tok.decode([259], { skipSpecialTokens: false })]: -1.5 });
  });

  it('echoes the prompt', async () => {
    const { client } = await setup({ reply: () => words(' world') });
    const res = await client.completions.create({ model: 'toy', prompt: 'Hello', echo: true });
    expect(res.choices[0]!.text).toBe('Hello world');
  });
});

describe('chat completions', () => {
  it('renders the template, encodes without special tokens and defaults max_tokens to the rest of the context', async () => {
    const { s, client } = await setup({ reply: () => words(' Hello world!') });
    const { data, response } = await client.chat.completions
      .create({
        model: 'toy',
        messages: [
          { role: 'developer', content: 'Be brief' },
          { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
        ],
      })
      .withResponse();
    expect(data).toMatchObject({
      object: 'chat.completion',
      model: 'toy',
      choices: [{ index: 0, message: { role: 'assistant', content: ' Hello world!' }, logprobs: null, finish_reason: 'stop' }],
    });
    expect(data.id).toMatch(/^chatcmpl-/);
    expect(response.headers.get('x-request-id')).toMatch(/.+/);
    const prompt = tok.encode('<|system|>Be brief\n<|user|>Hi\n<|assistant|>', { addSpecialTokens: false });
    expect(s.engine.requests[0]!.promptTokenIds).toEqual(prompt);
    expect(s.engine.requests[0]!.sampling.maxTokens).toBe(128 - prompt.length);
    expect(data.usage).toMatchObject({ prompt_tokens: prompt.length, completion_tokens: 4 });
  });

  it('honours max_completion_tokens and the model default', async () => {
    const { s, client } = await setup({ reply: () => words(' Hello world!') }, { defaultMaxTokens: 3 });
    await client.chat.completions.create({ model: 'toy', messages: [{ role: 'user', content: 'Hi' }] });
    await client.chat.completions.create({
      model: 'toy',
      messages: [{ role: 'user', content: 'Hi' }],
      max_completion_tokens: 9,
      max_tokens: 5,
    });
    expect(s.engine.requests.map((r) => r.sampling.maxTokens)).toEqual([3, 9]);
  });

  it('hands priority, logit_bias and min_tokens to the engine, and the template options to the template', async () => {
    const { s, client } = await setup({ reply: () => words(' the mat.') });
    const extra: Record<string, unknown> = {
      priority: 5,
      min_tokens: 2,
      chat_template_kwargs: { enable_thinking: false },
      continue_final_message: true,
    };
    const res = await client.chat.completions.create({
      model: 'toy',
      messages: [
        { role: 'user', content: 'Where?' },
        { role: 'assistant', content: 'On' },
      ],
      logit_bias: { '42': -100 },
      ...extra,
    });
    expect(res.choices[0]!.message.content).toBe(' the mat.');
    const req = s.engine.requests[0]!;
    expect(req.priority).toBe(5);
    expect(req.sampling).toMatchObject({ logitBias: { 42: -100 }, minTokens: 2 });
    // Continued: the prompt ends inside the assistant's message, with no new turn header.
    expect(tok.decode(req.promptTokenIds)).toBe('<|kwargs|>{"enable_thinking":false}\n<|user|>Where?\n<|assistant|>On');
    await client.chat.completions.create({
      model: 'toy',
      messages: [{ role: 'user', content: 'Hi' }],
      add_generation_prompt: false,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(tok.decode(s.engine.requests[1]!.promptTokenIds)).toBe('<|user|>Hi\n');
  });

  it("echo with logprobs shows the prompt tokens first (the first null); prompt_logprobs in vLLM's shape", async () => {
    const { s, client } = await setup({ reply: () => words(' Hello world!') });
    const res = await client.completions.create({ model: 'toy', prompt: 'Hi there', max_tokens: 2, logprobs: 1, echo: true });
    expect(s.engine.requests[0]!.sampling.promptLogprobs).toBe(1);
    const lp = res.choices[0]!.logprobs!;
    expect(res.choices[0]!.text).toBe('Hi there Hello world');
    expect(lp.tokens).toEqual(['<bos>', 'H', 'i', ' the', 'r', 'e', ' Hello', ' world']);
    expect(lp.token_logprobs!.slice(0, 3)).toEqual([null, -0.1, -0.2]);
    expect(lp.top_logprobs![0]).toBeNull();
    expect(lp.top_logprobs![1]).toEqual({ H: -0.1, ' Hello': -0.05 });
    expect(lp.text_offset!.slice(0, 3)).toEqual([0, 5, 6]);
    const streamed: Completion[] = [];
    for await (const c of await client.completions.create({
      model: 'toy',
      prompt: 'Hi there',
      max_tokens: 2,
      logprobs: 1,
      echo: true,
      stream: true,
    }))
      streamed.push(c);
    expect(streamed[0]!.choices[0]!.logprobs!.tokens!.slice(0, 2)).toEqual(['<bos>', 'H']);
    expect(streamed.flatMap((c) => c.choices[0]!.logprobs!.tokens!)).toEqual(lp.tokens);

    const extra = { prompt_logprobs: 0 } as Record<string, unknown>;
    const plain = (await client.completions.create({ model: 'toy', prompt: [5, 6, 7], max_tokens: 1, ...extra })) as Completion & {
      choices: { prompt_logprobs: unknown }[];
    };
    expect(plain.choices[0]!.prompt_logprobs).toEqual([
      null,
      { '6': { logprob: -0.1, rank: 1, decoded_token: '\u0004' } },
      { '7': { logprob: -0.2, rank: 2, decoded_token: '\u0005' } },
    ]);
    const chat = (await client.chat.completions.create({
      model: 'toy',
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 1,
      ...extra,
    })) as OpenAI.ChatCompletion & { prompt_logprobs: unknown[] };
    expect(chat.prompt_logprobs[0]).toBeNull();
    expect(chat.prompt_logprobs).toHaveLength(s.engine.requests.at(-1)!.promptTokenIds.length);
  });

  it('streams a role chunk, content deltas, a finish chunk and usage', async () => {
    const { client } = await setup({ reply: () => words(' Hello 😀!'), cachedTokens: 4 });
    const stream = await client.chat.completions.create({
      model: 'toy',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]).toMatchObject({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null });
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]!.id)).toBe(true);
    const content = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
    expect(content).toBe(' Hello 😀!');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens: 8, prompt_tokens_details: { cached_tokens: 4 } });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('streams n choices interleaved, each reproducible by seed', async () => {
    const { client } = await setup({ reply: bySeed });
    const stream = await client.chat.completions.create({
      model: 'toy',
      messages: [{ role: 'user', content: 'Hi' }],
      n: 3,
      seed: 1,
      stream: true,
    });
    const text = ['', '', ''];
    const finishes: (string | null)[] = [null, null, null];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text[c.index] += c.delta.content ?? '';
        finishes[c.index] = c.finish_reason ?? finishes[c.index]!;
      }
    }
    expect(text).toEqual([' Hello 1', ' Hello 2', ' Hello 3']);
    expect(finishes).toEqual(['stop', 'stop', 'stop']);
  });

  it('returns chat logprobs with bytes and top alternatives', async () => {
    const { s, client } = await setup({ reply: () => words(' Hello') });
    const res = await client.chat.completions.create({
      model: 'toy',
      messages: [{ role: 'user', content: 'Hi' }],
      logprobs: true,
      top_logprobs: 2,
    });
    expect(s.engine.requests[0]!.sampling.logprobs).toBe(2);
    const content = res.choices[0]!.logprobs!.content!;
    expect(content[0]).toEqual({
      token: ' Hello',
      logprob: -0.5,
      bytes: [...Buffer.from(' Hello')],
      top_logprobs: [
        { token: ' Hello', logprob: -0.5, bytes: [...Buffer.from(' Hello')] },
        { token: ' world', logprob: -1.5, bytes: [...Buffer.from(' world')] },
      ],
    });
    expect(content).toHaveLength(2); // ' Hello' and EOS
  });

  it('stops on a stop string in a streamed chat', async () => {
    const { s, client } = await setup({ reply: () => words(' the cat sat on the mat.'), chunkSize: 2 });
    const stream = await client.chat.completions.create({
      model: 'toy',
      messages: [{ role: 'user', content: 'Hi' }],
      stop: [' on'],
      stream: true,
    });
    let content = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(content).toBe(' the cat sat');
    expect(finish).toBe('stop');
    expect(s.engine.aborted).toHaveLength(1);
  });
});

describe('failures through the client', () => {
  it('surfaces a mid-stream engine failure as an APIError', async () => {
    const { s, client } = await setup({ reply: () => words(' Hello world! the cat') });
    s.engine.failAfterChunks = 2;
    const stream = await client.chat.completions.create({ model: 'toy', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? '');
      })(),
    ).rejects.toBeInstanceOf(OpenAI.APIError);
    expect(seen.join('')).toBe(' Hello world');
  });

  it('maps queue_full to a RateLimitError', async () => {
    const { s, client } = await setup();
    s.engine.refuseWith = new EngineError('queue_full', 'busy');
    await expect(client.completions.create({ model: 'toy', prompt: 'Hi' })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  });
});

describe('models', () => {
  it('lists and retrieves served models', async () => {
    const { client } = await setup();
    const list = await client.models.list();
    expect(list.data).toEqual([{ id: 'toy', object: 'model', created: 1700000000, owned_by: 'pdserve', max_model_len: 128 }]);
    expect((await client.models.retrieve('toy')).id).toBe('toy');
    await expect(client.models.retrieve('nope')).rejects.toMatchObject({ status: 404 });
  });
});
