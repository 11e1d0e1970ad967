// Anthropic's Messages API and vLLM's /tokenize, /detokenize and /version through `serve` and the
// disaggregated cluster, with the official @anthropic-ai/sdk client on the tiny model: greedy text equals
// the chat completion's, streamed equals whole, forced tool use gives inputs valid against input_schema.
import Anthropic from '@anthropic-ai/sdk';
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTinyModel } from '@pdserve/model';
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

const greedy = { temperature: 0 } as Record<string, unknown>;

describe.each(['serve', 'disaggregated'] as const)('%s', (name) => {
  const topo = (): Topology => topologies.find((t) => t.name === name)!;
  const anthropic = (): Anthropic => new Anthropic({ baseURL: topo().url, apiKey: 'x', maxRetries: 0 });
  const openai = (): OpenAI => new OpenAI({ baseURL: `${topo().url}/v1`, apiKey: 'x', maxRetries: 0 });

  it('a message equals the chat completion of the same conversation; streamed equals whole', async () => {
    const msg = await anthropic().messages.create({
      model: 'tiny',
      max_tokens: 12,
      system: 'Be terse.',
      messages: [{ role: 'user', content: 'Say something' }],
      ...greedy,
    });
    const chat = await openai().chat.completions.create({
      model: 'tiny',
      max_tokens: 12,
      temperature: 0,
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'user', content: 'Say something' },
      ],
    });
    expect(msg.content).toEqual([{ type: 'text', text: chat.choices[0]!.message.content }]);
    expect(msg.stop_reason).toBe(chat.choices[0]!.finish_reason === 'length' ? 'max_tokens' : 'end_turn');
    expect(msg.usage.input_tokens + (msg.usage.cache_read_input_tokens ?? 0)).toBe(chat.usage!.prompt_tokens);
    expect(msg.usage.output_tokens).toBe(chat.usage!.completion_tokens);
    const streamed = await anthropic()
      .messages.stream({
        model: 'tiny',
        max_tokens: 12,
        system: 'Be terse.',
        messages: [{ role: 'user', content: 'Say something' }],
        ...greedy,
      })
      .finalMessage();
    expect(streamed.content).toEqual(msg.content);
    expect(streamed.stop_reason).toBe(msg.stop_reason);
  });

  it('stop_sequences: the first match ends the message, named in stop_sequence', async () => {
    const whole = await anthropic().messages.create({
      model: 'tiny',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'Go on' }],
      ...greedy,
    });
    const text = (whole.content[0] as Anthropic.TextBlock).text;
    const stop = text.slice(4, 6);
    const cut = await anthropic().messages.create({
      model: 'tiny',
      max_tokens: 16,
      stop_sequences: [stop],
      messages: [{ role: 'user', content: 'Go on' }],
      ...greedy,
    });
    expect(cut).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: stop });
    expect((cut.content[0] as Anthropic.TextBlock | undefined)?.text ?? '').toBe(text.slice(0, text.indexOf(stop)));
    await waitIdle(topo());
  });

  it('tool_choice any: tool_use blocks valid against their input_schema, stop_reason tool_use', async () => {
    const tools: Anthropic.Tool[] = [
      {
        name: 'lookup',
        input_schema: {
          type: 'object',
          properties: { id: { type: 'integer', minimum: 1, maximum: 999 }, tag: { enum: ['a', 'b'] } },
          required: ['id', 'tag'],
        },
      },
    ];
    for (const seed of [1, 2]) {
      const msg = await anthropic().messages.create({
        model: 'tiny',
        max_tokens: 400,
        tools,
        tool_choice: { type: 'any' },
        messages: [{ role: 'user', content: `Look up ${seed}` }],
        ...{ temperature: 1 },
      });
      expect(msg.stop_reason).toBe('tool_use');
      const uses = msg.content.filter((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
      expect(uses.length).toBeGreaterThan(0);
      for (const u of uses) expect(ajv.validate(tools[0]!.input_schema, u.input), JSON.stringify(u.input)).toBe(true);
    }
  });

  it('/tokenize and /detokenize round-trip with the model tokenizer; /version answers', async () => {
    const post = async (path: string, body: unknown): Promise<Record<string, unknown>> =>
      (await (
        await fetch(`${topo().url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      ).json()) as Record<string, unknown>;
    const t = await post('/tokenize', { model: 'tiny', prompt: 'Tokenize me, please' });
    expect(t['tokens']).toEqual(tokenizer.encode('Tokenize me, please'));
    expect(t['count']).toBe((t['tokens'] as number[]).length);
    expect(await post('/detokenize', { model: 'tiny', tokens: t['tokens'] })).toEqual({
      prompt: tokenizer.decode(t['tokens'] as number[], { skipSpecialTokens: false }),
    });
    const chat = await post('/tokenize', { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }] });
    expect(tokenizer.decode(chat['tokens'] as number[], { skipSpecialTokens: false })).toContain('[INST] Hi [/INST]');
    expect(await (await fetch(`${topo().url}/version`)).json()).toMatchObject({ version: expect.any(String) });
  });
});
