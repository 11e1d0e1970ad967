// Tool calls read out of text, however the text is split into stream pieces.
import { describe, expect, it } from 'vitest';
import { defaultToolCallParser, toolCallExtractor, type Extracted, type ToolCallDelta } from './tool-calls';
import type { ToolChoice } from './tools';

/** Runs text through an extractor in pieces of `size` characters; returns content and whole calls. */
function run(choice: ToolChoice, parser: 'hermes' | 'llama3_json', text: string, size: number) {
  const x = toolCallExtractor(choice, parser);
  const outs: Extracted[] = [];
  for (let i = 0; i < text.length; i += size) outs.push(x.push(text.slice(i, i + size)));
  outs.push(x.finish());
  const deltas: ToolCallDelta[] = outs.flatMap((o) => o.calls);
  const calls: { name: string; arguments: string; id: string }[] = [];
  for (const d of deltas) {
    if (d.id !== undefined) calls[d.index] = { id: d.id, name: d.function.name!, arguments: d.function.arguments };
    else calls[d.index]!.arguments += d.function.arguments;
  }
  return {
    content: outs.map((o) => o.content).join(''),
    calls: calls.map((c) => ({ name: c.name, args: JSON.parse(c.arguments) as unknown, id: c.id })),
    called: x.called,
  };
}

const SIZES = [1, 2, 3, 5, 7, 1000];
const auto: ToolChoice = { kind: 'auto' };

describe('hermes (Qwen)', () => {
  const text =
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>';
  it.each(SIZES)('content before the calls, then every call, in pieces of %i', (size) => {
    const r = run(auto, 'hermes', text, size);
    expect(r.content).toBe('Let me check.\n');
    expect(r.calls.map(({ name, args }) => ({ name, args }))).toEqual([
      { name: 'get_weather', args: { city: 'Paris' } },
      { name: 'get_time', args: { tz: 'CET' } },
    ]);
    expect(r.calls[0]!.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
    expect(r.called).toBe(true);
  });

  it.each(SIZES)('plain text (with a "<" that is no tag) is all content, in pieces of %i', (size) => {
    expect(run(auto, 'hermes', 'a < b and <tool is not a call', size)).toMatchObject({
      content: 'a < b and <tool is not a call',
      calls: [],
      called: false,
    });
  });

  it('a call cut short or not JSON stays text', () => {
    expect(run(auto, 'hermes', 'x<tool_call>{"name": "f", "argu', 4)).toMatchObject({
      content: 'x<tool_call>{"name": "f", "argu',
      called: false,
    });
    expect(run(auto, 'hermes', '<tool_call>not json</tool_call>', 3)).toMatchObject({
      content: '<tool_call>not json</tool_call>',
      called: false,
    });
  });
});

describe('llama3_json', () => {
  it.each(SIZES)('a bare JSON call (with python_tag, "parameters") in pieces of %i', (size) => {
    const r = run(auto, 'llama3_json', '<|python_tag|>{"name": "search", "parameters": {"q": "pdserve"}}', size);
    expect(r).toMatchObject({ content: '', called: true });
    expect(r.calls.map(({ name, args }) => ({ name, args }))).toEqual([{ name: 'search', args: { q: 'pdserve' } }]);
  });

  it('several calls separated by ";"', () => {
    const r = run(auto, 'llama3_json', ' {"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}', 4);
    expect(r.calls.map((c) => c.name)).toEqual(['a', 'b']);
  });

  it.each(SIZES)('text streams as text, and JSON that is no call stays text (pieces of %i)', (size) => {
    expect(run(auto, 'llama3_json', 'Hello {there}', size)).toMatchObject({ content: 'Hello {there}', called: false });
    expect(run(auto, 'llama3_json', '{"answer": 42}', size)).toMatchObject({ content: '{"answer": 42}', called: false });
  });
});

describe('constrained shapes', () => {
  it.each(SIZES)('named: the output is the arguments, streamed into one call (pieces of %i)', (size) => {
    const r = run({ kind: 'named', name: 'f' }, 'hermes', '{"a": [1, 2]}', size);
    expect(r).toMatchObject({ content: '', called: true, calls: [{ name: 'f', args: { a: [1, 2] } }] });
  });

  it('required: an array of calls; cut short it stays text', () => {
    const r = run({ kind: 'required' }, 'hermes', '[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"b": true}}]', 5);
    expect(r.calls.map(({ name, args }) => ({ name, args }))).toEqual([
      { name: 'f', args: {} },
      { name: 'g', args: { b: true } },
    ]);
    expect(run({ kind: 'required' }, 'hermes', '[{"name": "f", "argum', 5)).toMatchObject({
      content: '[{"name": "f", "argum',
      called: false,
    });
  });

  it('none and no tools: text as it is', () => {
    expect(run({ kind: 'none' }, 'hermes', '<tool_call>{"name": "f", "arguments": {}}</tool_call>', 3).content).toBe(
      '<tool_call>{"name": "f", "arguments": {}}</tool_call>',
    );
  });
});

it('the default parser follows the model family', () => {
  expect(defaultToolCallParser('qwen2')).toBe('hermes');
  expect(defaultToolCallParser('qwen3')).toBe('hermes');
  expect(defaultToolCallParser('llama')).toBe('llama3_json');
});
