// Tool calls read out of generated text, incrementally: each extractor takes the text of one choice as it
// streams and splits it into content and OpenAI-style tool-call deltas. Which one runs depends on the tool
// choice (constrained output has a known JSON shape, see tools.ts) and, for `auto`, on the model's syntax.
import { randomBytes } from 'node:crypto';
import type { ToolChoice } from './tools';

/** Tool-call syntaxes a model may write under `auto` (vLLM's parser names). */
export const TOOL_CALL_PARSERS = ['hermes', 'llama3_json'] as const;
export type ToolCallParserName = (typeof TOOL_CALL_PARSERS)[number];

/**
 * The syntax a model family writes by default, from config.json's model_type: Qwen 2/2.5/3 (and Hermes
 * fine-tunes) write `<tool_call>{...}</tool_call>`; Llama 3.x writes a bare JSON object. Others: hermes,
 * the most common convention among open chat templates.
 */
export function defaultToolCallParser(modelType: string | undefined): ToolCallParserName {
  return modelType === 'llama' ? 'llama3_json' : 'hermes';
}

/** One streamed piece of a tool call (OpenAI's `delta.tool_calls[]`): the first carries id, type and name. */
export interface ToolCallDelta {
  readonly index: number;
  readonly id?: string;
  readonly type?: 'function';
  readonly function: { readonly name?: string; readonly arguments: string };
}

/** What one piece of text turned into. */
export interface Extracted {
  readonly content: string;
  readonly calls: readonly ToolCallDelta[];
}

export interface ToolCallExtractor {
  push(text: string): Extracted;
  /** The end of the output: whatever was held back. */
  finish(): Extracted;
  /** Whether any tool call was emitted. */
  readonly called: boolean;
}

/** OpenAI-style call ids: `call_` and 24 random alphanumerics. */
export function toolCallId(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `call_${[...randomBytes(24)].map((b) => alphabet[b % alphabet.length]).join('')}`;
}

const NOTHING: Extracted = { content: '', calls: [] };

/**
 * The extractor for a choice: constrained shapes for required and named, the model's syntax for auto.
 * `maxCalls` (parallel_tool_calls: false → 1) drops calls past the first ones.
 */
export function toolCallExtractor(choice: ToolChoice | undefined, parser: ToolCallParserName, maxCalls = Infinity): ToolCallExtractor {
  const x = extractorFor(choice, parser);
  return maxCalls === Infinity ? x : new AtMost(x, maxCalls);
}

class AtMost implements ToolCallExtractor {
  constructor(
    private readonly inner: ToolCallExtractor,
    private readonly max: number,
  ) {}
  get called(): boolean {
    return this.inner.called;
  }
  push(text: string): Extracted {
    return this.keep(this.inner.push(text));
  }
  finish(): Extracted {
    return this.keep(this.inner.finish());
  }
  private keep(x: Extracted): Extracted {
    return { content: x.content, calls: x.calls.filter((c) => c.index < this.max) };
  }
}

function extractorFor(choice: ToolChoice | undefined, parser: ToolCallParserName): ToolCallExtractor {
  switch (choice?.kind) {
    case 'named':
      return new NamedCall(choice.name);
    case 'required':
      return new RequiredCalls();
    case 'auto':
      return parser === 'llama3_json' ? new Llama3Json() : new Hermes();
    default:
      return new PlainText();
  }
}

class PlainText implements ToolCallExtractor {
  readonly called = false;
  push(text: string): Extracted {
    return { content: text, calls: [] };
  }
  finish(): Extracted {
    return NOTHING;
  }
}

/** A call as one whole delta. */
function wholeCall(index: number, name: string, args: unknown): ToolCallDelta {
  return {
    index,
    id: toolCallId(),
    type: 'function',
    function: { name, arguments: typeof args === 'string' ? args : JSON.stringify(args) },
  };
}

/** A parsed `{"name": string, "arguments" | "parameters": object}`, or undefined. */
function callOf(v: unknown): { readonly name: string; readonly args: unknown } | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const args = o['arguments'] ?? o['parameters'];
  if (typeof o['name'] !== 'string' || typeof args !== 'object' || args === null || Array.isArray(args)) return undefined;
  return { name: o['name'], args };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** tool_choice naming a function: the output is its arguments object, streamed as they come. */
class NamedCall implements ToolCallExtractor {
  called = false;
  constructor(private readonly name: string) {}
  push(text: string): Extracted {
    if (text === '') return NOTHING;
    if (this.called) return { content: '', calls: [{ index: 0, function: { arguments: text } }] };
    this.called = true;
    return { content: '', calls: [{ index: 0, id: toolCallId(), type: 'function', function: { name: this.name, arguments: text } }] };
  }
  finish(): Extracted {
    return this.called ? NOTHING : this.push('{}');
  }
}

/** tool_choice required: a JSON array of calls, emitted once complete (output cut short stays content). */
class RequiredCalls implements ToolCallExtractor {
  called = false;
  private text = '';
  push(text: string): Extracted {
    this.text += text;
    return NOTHING;
  }
  finish(): Extracted {
    const v = parseJson(this.text);
    const calls = Array.isArray(v) ? v.map(callOf) : [];
    if (calls.length === 0 || calls.some((c) => c === undefined)) return { content: this.text, calls: [] };
    this.called = true;
    return { content: '', calls: calls.map((c, i) => wholeCall(i, c!.name, c!.args)) };
  }
}

/** Hermes / Qwen: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, any number, after optional text. */
class Hermes implements ToolCallExtractor {
  private static readonly OPEN = '<tool_call>';
  private static readonly CLOSE = '</tool_call>';
  private buf = '';
  private inside = false;
  private count = 0;
  get called(): boolean {
    return this.count > 0;
  }

  push(text: string): Extracted {
    this.buf += text;
    let content = '';
    const calls: ToolCallDelta[] = [];
    // Between and after calls, whitespace is the syntax's, not content.
    const say = (t: string): void => {
      if (!(this.count > 0 && t.trim() === '')) content += t;
    };
    for (;;) {
      if (!this.inside) {
        const at = this.buf.indexOf(Hermes.OPEN);
        if (at === -1) {
          // Hold back a tail that may be the start of the tag.
          const keep = partialSuffix(this.buf, Hermes.OPEN);
          say(this.buf.slice(0, this.buf.length - keep));
          this.buf = this.buf.slice(this.buf.length - keep);
          break;
        }
        say(this.buf.slice(0, at));
        this.buf = this.buf.slice(at + Hermes.OPEN.length);
        this.inside = true;
      }
      const end = this.buf.indexOf(Hermes.CLOSE);
      if (end === -1) break;
      const body = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + Hermes.CLOSE.length);
      this.inside = false;
      const call = callOf(parseJson(body.trim()));
      if (call === undefined) content += Hermes.OPEN + body + Hermes.CLOSE;
      else calls.push(wholeCall(this.count++, call.name, call.args));
    }
    return { content, calls };
  }

  finish(): Extracted {
    // An unclosed call (output cut short) is returned as the text it was.
    const rest = (this.inside ? Hermes.OPEN : '') + this.buf;
    this.buf = '';
    this.inside = false;
    return { content: this.count > 0 && rest.trim() === '' ? '' : rest, calls: [] };
  }
}

/** How many trailing characters of `text` are a proper prefix of `tag`. */
function partialSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(tag.slice(0, n))) return n;
  }
  return 0;
}

/**
 * Llama 3.x JSON: the whole reply is `{"name": ..., "parameters": {...}}` (optionally after
 * `<|python_tag|>`, several separated by `;`). A reply that starts like one is held until it ends, then
 * becomes calls if it parses as calls and text otherwise; any other reply streams as text.
 */
class Llama3Json implements ToolCallExtractor {
  private static readonly TAG = '<|python_tag|>';
  private mode: 'undecided' | 'text' | 'json' = 'undecided';
  private buf = '';
  called = false;

  push(text: string): Extracted {
    if (this.mode === 'text') return { content: text, calls: [] };
    this.buf += text;
    if (this.mode === 'json') return NOTHING;
    const head = this.buf.trimStart();
    if (head === '' || (head.length < Llama3Json.TAG.length && Llama3Json.TAG.startsWith(head))) return NOTHING;
    this.mode = head.startsWith('{') || head.startsWith(Llama3Json.TAG) ? 'json' : 'text';
    if (this.mode === 'json') return NOTHING;
    const content = this.buf;
    this.buf = '';
    return { content, calls: [] };
  }

  finish(): Extracted {
    const text = this.buf;
    this.buf = '';
    if (this.mode !== 'json') return { content: text, calls: [] };
    const body = text.trim().replace(Llama3Json.TAG, '').trim();
    const whole = parseJson(body);
    const parts = whole !== undefined ? [whole] : body.split(/(?<=\})\s*;\s*(?=\{)/).map(parseJson);
    const calls = parts.map(callOf);
    if (calls.length === 0 || calls.some((c) => c === undefined)) return { content: text, calls: [] };
    this.called = true;
    return { content: '', calls: calls.map((c, i) => wholeCall(i, c!.name, c!.args)) };
  }
}
