import type { TextTokenizer } from './types';

/** Prompt tokens kept as left context for the first output token (vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET). */
const PROMPT_CONTEXT_TOKENS = 5;

/**
 * Pending tokens (decoded but not yet emitted) after which text ending in U+FFFD is emitted anyway.
 * A UTF-8 character has at most 4 bytes, so a genuinely incomplete one spans at most 4 byte tokens;
 * a longer run means the model produced invalid bytes, and waiting longer would grow the window forever.
 */
const MAX_PENDING_TOKENS = 8;

/** Invisible tokens (e.g. skipped special tokens) tolerated at the start of the stream before they are dropped. */
const MAX_INVISIBLE_TOKENS = 64;

const REPLACEMENT_CHAR = '\uFFFD';

export interface IncrementalDetokenizerOptions {
  /** Passed to decode; default true. */
  readonly skipSpecialTokens?: boolean;
  /** The prompt, so the first output token is decoded in context (a leading space is kept). */
  readonly promptTokenIds?: readonly number[];
}

/**
 * Turns a stream of token ids into a stream of text, decoding only a small window per token.
 *
 * vLLM's prefix/read-offset algorithm: `window[0, readIndex)` is text already emitted (kept as left context,
 * so that tokenizers that strip a leading space at the start of a decode do not drop it mid-sequence), and
 * `window[readIndex, end)` is not yet emitted. Each push decodes the prefix part and the whole window and
 * emits the difference, unless the window ends in U+FFFD (half a UTF-8 character: wait for more tokens).
 * After an emit, the window slides so that it starts at the old read index.
 */
export class IncrementalDetokenizer {
  private readonly decodeOpts: { readonly skipSpecialTokens: boolean };
  private window: number[];
  private readIndex: number;
  private prefixText: string;

  constructor(
    private readonly tokenizer: TextTokenizer,
    opts: IncrementalDetokenizerOptions = {},
  ) {
    this.decodeOpts = { skipSpecialTokens: opts.skipSpecialTokens ?? true };
    const prompt = opts.promptTokenIds ?? [];
    this.window = prompt.slice(Math.max(prompt.length - PROMPT_CONTEXT_TOKENS, 0));
    this.readIndex = this.window.length;
    this.prefixText = this.decode(this.window);
  }

  /** Adds one generated token; returns the text it completes (often '', e.g. for half a character). */
  push(tokenId: number): string {
    this.window.push(tokenId);
    const text = this.decode(this.window);
    const pending = this.window.length - this.readIndex;
    if (text === this.prefixText) {
      // Nothing visible (e.g. a skipped special token). With visible left context such tokens can never
      // become visible, so drop them to keep the window bounded; without it keep them a while, since a
      // tokenizer that strips one leading space may show a space token only once a later token arrives.
      if (this.prefixText !== '' || pending > MAX_INVISIBLE_TOKENS) this.window.length = this.readIndex;
      return '';
    }
    // Decoding is not always monotonic (space clean-up can shorten text); wait until it grows again.
    if (text.length <= this.prefixText.length) return pending > MAX_INVISIBLE_TOKENS ? this.advance(text) : '';
    if (text.endsWith(REPLACEMENT_CHAR) && pending <= MAX_PENDING_TOKENS) return '';
    return this.advance(text);
  }

  /** Emits whatever is still held back (a trailing incomplete character becomes U+FFFD) and resets. */
  flush(): string {
    const text = this.decode(this.window);
    const out = text.length > this.prefixText.length ? text.slice(this.prefixText.length) : '';
    this.window = [];
    this.readIndex = 0;
    this.prefixText = '';
    return out;
  }

  private advance(text: string): string {
    const delta = text.slice(this.prefixText.length);
    this.window = this.window.slice(this.readIndex);
    this.readIndex = this.window.length;
    this.prefixText = this.decode(this.window);
    return delta;
  }

  private decode(ids: readonly number[]): string {
    return ids.length === 0 ? '' : this.tokenizer.decode(ids, this.decodeOpts);
  }
}
