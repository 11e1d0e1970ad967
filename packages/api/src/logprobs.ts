import type { PromptLogprob, TextTokenizer } from './deps';
import type { GeneratedToken } from './generate';

/**
 * The text of single tokens, as shown in logprobs. Each is decoded alone (special tokens kept), so a
 * SentencePiece word-start token loses its leading space and a byte token that is part of a multi-byte
 * character shows as U+FFFD; `bytes` in chat logprobs is the UTF-8 of that text.
 */
export class TokenTexts {
  private readonly cache = new Map<number, string>();

  constructor(private readonly tokenizer: TextTokenizer) {}

  text(tokenId: number): string {
    let t = this.cache.get(tokenId);
    if (t === undefined) {
      t = this.tokenizer.decode([tokenId], { skipSpecialTokens: false });
      this.cache.set(tokenId, t);
    }
    return t;
  }
}

/** The legacy completions format. Offsets count Unicode code points, as vLLM's (Python's) do. */
export interface CompletionLogprobs {
  readonly tokens: string[];
  /** null for the first prompt token under echo (nothing comes before it). */
  readonly token_logprobs: (number | null)[];
  readonly top_logprobs: (Record<string, number> | null)[];
  readonly text_offset: number[];
}

/**
 * The echoed prompt's part of completions logprobs: every prompt token, the first with null logprobs;
 * offsets from 0 over the tokens' texts. `entries` are positions 1 on (the engine's prompt logprobs).
 */
export function echoLogprobs(promptIds: readonly number[], entries: readonly PromptLogprob[], texts: TokenTexts): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = 0;
  promptIds.forEach((id, i) => {
    const text = texts.text(id);
    const e = i === 0 ? undefined : entries[i - 1];
    out.tokens.push(text);
    out.text_offset.push(offset);
    offset += codePoints(text);
    if (e === undefined) {
      out.token_logprobs.push(null);
      out.top_logprobs.push(null);
      return;
    }
    out.token_logprobs.push(e.logprob);
    const top: Record<string, number> = {};
    for (const alt of e.top) top[texts.text(alt.tokenId)] = alt.logprob;
    top[text] ??= e.logprob;
    out.top_logprobs.push(top);
  });
  return out;
}

/** Two pieces of completions logprobs, one after the other. */
export function concatLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

/** One prompt position in vLLM's prompt_logprobs: token id → its logprob, rank and text. */
export type VllmPromptLogprob = Record<string, { readonly logprob: number; readonly rank: number; readonly decoded_token: string }> | null;

/** vLLM's `prompt_logprobs`: null for the first token, then the prompt token and its top alternatives. */
export function vllmPromptLogprobs(
  promptIds: readonly number[],
  entries: readonly PromptLogprob[],
  texts: TokenTexts,
): VllmPromptLogprob[] {
  return promptIds.map((id, i) => {
    const e = i === 0 ? undefined : entries[i - 1];
    if (e === undefined) return null;
    const out: Record<string, { logprob: number; rank: number; decoded_token: string }> = {};
    e.top.forEach((alt, j) => (out[String(alt.tokenId)] = { logprob: alt.logprob, rank: j + 1, decoded_token: texts.text(alt.tokenId) }));
    out[String(id)] = { logprob: e.logprob, rank: e.rank, decoded_token: texts.text(id) };
    return out;
  });
}

/**
 * `startOffset` is where the first token's text begins in the choice's text (after any echoed prompt,
 * or after the tokens of earlier stream chunks); returns the offset after the last token too.
 */
export function completionLogprobs(
  tokens: readonly GeneratedToken[],
  texts: TokenTexts,
  startOffset: number,
): { readonly logprobs: CompletionLogprobs; readonly endOffset: number } {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = startOffset;
  for (const t of tokens) {
    const text = texts.text(t.tokenId);
    out.tokens.push(text);
    out.token_logprobs.push(t.logprob);
    // vLLM's shape: the top alternatives plus the sampled token, which is always present.
    const top: Record<string, number> = {};
    for (const alt of t.top) top[texts.text(alt.tokenId)] = alt.logprob;
    top[text] ??= t.logprob;
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += codePoints(text);
  }
  return { logprobs: out, endOffset: offset };
}

export interface ChatTopLogprob {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  readonly top_logprobs: ChatTopLogprob[];
}

export interface ChatLogprobs {
  readonly content: ChatTokenLogprob[];
}

export function chatLogprobs(tokens: readonly GeneratedToken[], texts: TokenTexts, topN: number): ChatLogprobs {
  const entry = (tokenId: number, logprob: number): ChatTopLogprob => {
    const token = texts.text(tokenId);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };
  return {
    content: tokens.map((t) => ({
      ...entry(t.tokenId, t.logprob),
      top_logprobs: t.top.slice(0, topN).map((alt) => entry(alt.tokenId, alt.logprob)),
    })),
  };
}

export function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}
