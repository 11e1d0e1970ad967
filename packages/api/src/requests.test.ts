import { describe, expect, it } from 'vitest';
import { ApiError } from './errors';
import { resolveMaxTokens, type ServedModel } from './prompt';
import { parseChatRequest, parseCompletionRequest } from './requests';
import { FakeEngine, ToyTokenizer } from './testing';

describe('parseChatRequest', () => {
  it('applies OpenAI defaults, treats null as absent and flattens content parts', () => {
    const r = parseChatRequest({
      model: 'm',
      messages: [
        { role: 'developer', content: 'rules' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a' },
            { type: 'text', text: 'b' },
          ],
          name: 'ann',
        },
        { role: 'assistant', content: null, tool_calls: [] },
        { role: 'tool', content: 'result' },
      ],
      stop: null,
      temperature: null,
      stream: true,
      stream_options: { include_usage: true },
      logprobs: true,
    });
    expect(r.messages).toEqual([
      { role: 'system', content: 'rules' },
      { role: 'user', content: 'a\nb', name: 'ann' },
      { role: 'assistant', content: '' },
      { role: 'tool', content: 'result' },
    ]);
    expect(r).toMatchObject({ n: 1, stream: true, includeUsage: true });
    expect(r.sampling).toMatchObject({ temperature: 1, topP: 1, topK: 0, stop: [], logprobs: 0, maxTokens: undefined });
  });

  it('refuses stream_options without stream (as OpenAI does), and maps top_k -1 to disabled', () => {
    expect(() => parseChatRequest({ messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true } })).toThrow(
      /only allowed when 'stream' is true/,
    );
    expect(() => parseCompletionRequest({ prompt: 'x', stream: false, stream_options: {} })).toThrow(ApiError);
    const r = parseChatRequest({ messages: [{ role: 'user', content: 'x' }], top_k: -1 });
    expect(r.includeUsage).toBe(false);
    expect(r.model).toBeUndefined();
    expect(r.sampling.topK).toBe(0);
  });

  it("takes vLLM's guided_json and structured_outputs.json (object or JSON text) as a json_schema constraint", () => {
    const schema = { type: 'object', properties: { a: { type: 'integer' } } };
    const messages = [{ role: 'user', content: 'x' }];
    expect(parseChatRequest({ messages, guided_json: schema }).sampling.structuredOutput).toEqual({ kind: 'json_schema', schema });
    expect(parseCompletionRequest({ prompt: 'x', guided_json: JSON.stringify(schema) }).sampling.structuredOutput).toEqual({
      kind: 'json_schema',
      schema,
    });
    expect(parseChatRequest({ messages, structured_outputs: { json: schema } }).sampling.structuredOutput).toEqual({
      kind: 'json_schema',
      schema,
    });
  });

  it('reads priority, logit_bias, min_tokens, chat_template_kwargs, add_generation_prompt and continue_final_message', () => {
    const messages = [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'Once upon' },
    ];
    const r = parseChatRequest({
      messages,
      priority: -3,
      logit_bias: { '7': -100, '9': 2.5 },
      min_tokens: 2,
      chat_template_kwargs: { enable_thinking: false },
      continue_final_message: true,
    });
    expect(r).toMatchObject({
      priority: -3,
      chatTemplateKwargs: { enable_thinking: false },
      continueFinalMessage: true,
      addGenerationPrompt: false,
    });
    expect(r.sampling).toMatchObject({ logitBias: { 7: -100, 9: 2.5 }, minTokens: 2 });
    expect(parseChatRequest({ messages }).addGenerationPrompt).toBe(true);
    expect(parseChatRequest({ messages, add_generation_prompt: false }).addGenerationPrompt).toBe(false);
    expect(parseCompletionRequest({ prompt: 'x' }).priority).toBe(0);
    expect(() => parseChatRequest({ messages, continue_final_message: true, add_generation_prompt: true })).toThrow(/cannot both be true/);
    expect(() => parseChatRequest({ messages: [messages[0]], continue_final_message: true })).toThrow(/last message/);
    expect(() => parseChatRequest({ messages, priority: 2 ** 40 })).toThrow(/priority/);
    expect(() => parseChatRequest({ messages, chat_template_kwargs: [] })).toThrow(/chat_template_kwargs/);
  });

  it('throws ApiError with the parameter name', () => {
    try {
      parseChatRequest({ messages: [{ role: 'user', content: 'x' }], frequency_penalty: 'high' });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ApiError);
      expect((e as ApiError).toBody().error).toMatchObject({ param: 'frequency_penalty', code: 'invalid_type' });
    }
  });
});

describe('parseCompletionRequest', () => {
  it('accepts every prompt shape', () => {
    expect(parseCompletionRequest({ prompt: 'a' }).prompts).toEqual([{ kind: 'text', text: 'a' }]);
    expect(parseCompletionRequest({ prompt: ['a', 'b'] }).prompts).toHaveLength(2);
    expect(parseCompletionRequest({ prompt: [1, 2] }).prompts).toEqual([{ kind: 'tokens', ids: [1, 2] }]);
    expect(parseCompletionRequest({ prompt: [[1], [2, 3]] }).prompts).toEqual([
      { kind: 'tokens', ids: [1] },
      { kind: 'tokens', ids: [2, 3] },
    ]);
    expect(parseCompletionRequest({ prompt: 'a', stop: 'x', logprobs: 0 }).sampling).toMatchObject({ stop: ['x'], logprobs: 0 });
  });

  it('limits prompts × n', () => {
    expect(() => parseCompletionRequest({ prompt: Array.from({ length: 16 }, () => 'a'), n: 16 })).toThrow(/limit is 128/);
  });
});

describe('resolveMaxTokens', () => {
  const model = (defaultMaxTokens?: number): ServedModel => ({
    id: 'm',
    engine: new FakeEngine(),
    tokenizer: new ToyTokenizer(),
    maxModelLen: 100,
    defaultMaxTokens,
  });

  it('follows vLLM: 16 for completions, the rest of the context for chat, clamped to the room left', () => {
    expect(resolveMaxTokens(model(), 10, undefined, 'completion')).toBe(16);
    expect(resolveMaxTokens(model(), 90, undefined, 'completion')).toBe(10);
    expect(resolveMaxTokens(model(), 10, undefined, 'chat')).toBe(90);
    expect(resolveMaxTokens(model(32), 10, undefined, 'chat')).toBe(32);
    expect(resolveMaxTokens(model(), 10, 90, 'chat')).toBe(90);
  });

  it('refuses what does not fit', () => {
    expect(() => resolveMaxTokens(model(), 10, 91, 'chat')).toThrow(/101 tokens \(10 in the messages, 91 for the completion\)/);
    expect(() => resolveMaxTokens(model(), 100, undefined, 'completion')).toThrow(/no room/);
  });
});
