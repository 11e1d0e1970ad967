import { Template } from '@huggingface/jinja';
import type { ChatMessage, ChatRenderOptions } from './types';

/** A chat template failed: no template, a template that does not parse, or one that raised (bad roles etc.). */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
}

/** The special tokens a template may reference, as text (HF passes its special_tokens_map the same way). */
export interface TemplateTokens {
  readonly bos_token?: string;
  readonly eos_token?: string;
  readonly unk_token?: string;
  readonly pad_token?: string;
}

/**
 * Picks the template source from tokenizer_config.json's `chat_template`: a string, or a list of
 * `{name, template}` of which "default" is used. Anything else means no template.
 */
export function selectChatTemplate(value: unknown): string | undefined {
  if (typeof value === 'string') return value.length > 0 ? value : undefined;
  if (!Array.isArray(value)) return undefined;
  for (const entry of value as unknown[]) {
    if (!isRecord(entry)) continue;
    if (entry['name'] === 'default' && typeof entry['template'] === 'string') return entry['template'];
  }
  return undefined;
}

/** `"<s>"` or `{content: "<s>", ...}` (an AddedToken as saved by transformers) → `"<s>"`. */
export function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value['content'] === 'string') return value['content'];
  return undefined;
}

/** A parsed chat template; parse once, render per request. */
export class ChatTemplate {
  private parsed: Template | undefined;

  constructor(
    private readonly source: string,
    private readonly tokens: TemplateTokens,
  ) {}

  render(messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): string {
    const template = this.template();
    const last = messages[messages.length - 1];
    if (opts.continueFinalMessage && opts.addGenerationPrompt)
      throw new ChatTemplateError('continue_final_message and add_generation_prompt exclude each other');
    if (opts.continueFinalMessage && last?.role !== 'assistant')
      throw new ChatTemplateError('continue_final_message needs a final assistant message');
    let text: string;
    try {
      text = template.render({
        // transformers passes these two as None when unused; templates test `tools is not none`.
        tools: opts.tools === undefined || opts.tools.length === 0 ? null : opts.tools,
        documents: null,
        ...this.tokens,
        ...opts.kwargs,
        messages: messages.map(plainMessage),
        add_generation_prompt: opts.addGenerationPrompt ?? false,
      });
    } catch (err) {
      throw new ChatTemplateError(`chat template: ${oneLine(err)}`, { cause: err });
    }
    if (!opts.continueFinalMessage || last === undefined) return text;
    // As transformers does: cut after the final message's content, dropping the end-of-turn the template added.
    const content = last.content.trimEnd();
    const at = content === '' ? -1 : text.lastIndexOf(content);
    if (at === -1) throw new ChatTemplateError('continue_final_message: the final message does not appear in the rendered template');
    return text.slice(0, at + content.length);
  }

  // Parsed lazily so that a template our Jinja cannot read only breaks chat requests, not model loading.
  private template(): Template {
    if (this.parsed) return this.parsed;
    try {
      this.parsed = new Template(this.source);
    } catch (err) {
      throw new ChatTemplateError(`chat template does not parse: ${oneLine(err)}`, { cause: err });
    }
    return this.parsed;
  }
}

// Templates index messages like dicts; hand them fresh plain objects without undefined fields.
function plainMessage(m: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role, content: m.content };
  if (m.name !== undefined) out['name'] = m.name;
  if (m.toolCallId !== undefined) out['tool_call_id'] = m.toolCallId;
  if (m.toolCalls !== undefined && m.toolCalls.length > 0) {
    out['tool_calls'] = m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
  }
  return out;
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
