// Grammars compiled against one model's vocabulary (once per constraint, cached), and per-sequence
// matchers that give the next-token mask, accept tokens and roll back.
import type { StructuredOutput } from '@pdserve/model';
import { GrammarError } from './errors';
import { jsonObjectGrammar, jsonSchemaGrammar } from './json-schema';
import { vocabularyFromDir, type Vocabulary } from './vocabulary';
import {
  loadXgrammar,
  takeMessages,
  type XgBinding,
  type XgCompiledGrammar,
  type XgGrammarCompiler,
  type XgGrammarMatcher,
  type XgTokenizerInfo,
} from './xgrammar';

export interface GrammarCompilerOptions {
  readonly vocabulary: Vocabulary;
  /** Width of a logits row (the model's vocab_size); ids past the tokenizer's are never allowed. */
  readonly vocabSize: number;
  /** Tokens that end generation (the model's EOS): allowed exactly when the grammar is complete. */
  readonly stopTokenIds: readonly number[];
  /** Compiled grammars kept, least recently used evicted; default 64. */
  readonly cacheSize?: number;
}

/** The EBNF a constraint compiles to (no vocabulary needed): throws GrammarError for an unsupported schema. */
export function grammarFor(c: StructuredOutput): string {
  if (c.kind === 'json_object') return jsonObjectGrammar();
  try {
    return jsonSchemaGrammar(c.schema, { strict: c.strict ?? true });
  } catch (err) {
    // The converter recurses along the schema (and a pattern's groups): one nested past the stack is refused.
    if (err instanceof RangeError && /call stack/i.test(err.message))
      throw new GrammarError('unsupported_schema', '#: the schema is nested too deeply');
    throw err;
  }
}

export class GrammarCompiler {
  /** Mask words per row: ceil(vocabSize / 32). */
  readonly maskWords: number;
  private readonly cache = new Map<string, CompiledGrammar>();
  private readonly cacheSize: number;
  private disposed = false;

  private constructor(
    private readonly xg: XgBinding,
    private readonly info: XgTokenizerInfo,
    private readonly compiler: XgGrammarCompiler,
    readonly vocabSize: number,
    cacheSize: number,
  ) {
    this.maskWords = Math.ceil(vocabSize / 32);
    this.cacheSize = cacheSize;
  }

  static async create(opts: GrammarCompilerOptions): Promise<GrammarCompiler> {
    const xg = await loadXgrammar();
    const vocab = xg.vecStringFromJSArray(opts.vocabulary.encoded);
    const stops = xg.vecIntFromJSArray(opts.stopTokenIds);
    try {
      const info = new xg.TokenizerInfo(vocab, opts.vocabulary.type, opts.vocabSize, stops, false);
      // One thread (the WASM build has none) and no xgrammar-side cache: ours keys on the constraint.
      const compiler = new xg.GrammarCompiler(info, 1, false);
      return new GrammarCompiler(xg, info, compiler, opts.vocabSize, opts.cacheSize ?? 64);
    } finally {
      vocab.delete();
      stops.delete();
    }
  }

  /** For a Hugging Face model directory: its tokenizer.json, logits width and EOS ids. */
  static forModel(modelDir: string, vocabSize: number, eosTokenIds: readonly number[]): Promise<GrammarCompiler> {
    return GrammarCompiler.create({ vocabulary: vocabularyFromDir(modelDir), vocabSize, stopTokenIds: eosTokenIds });
  }

  /** Synchronous (it runs on the caller's thread); a cache hit costs a map lookup. */
  compile(constraint: StructuredOutput): CompiledGrammar {
    if (this.disposed) throw new Error('grammar compiler is disposed');
    let key: string;
    try {
      key = JSON.stringify(constraint);
    } catch {
      // Only a value nested past the stack fails here (the constraint arrived as JSON).
      throw new GrammarError('unsupported_schema', '#: the schema is nested too deeply');
    }
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const ebnf = grammarFor(constraint);
    const t0 = performance.now();
    let handle: XgCompiledGrammar;
    takeMessages();
    try {
      const grammar = new this.xg.Grammar.FromEBNF(ebnf, 'root');
      try {
        handle = this.compiler.CompileGrammar(grammar);
      } finally {
        grammar.delete();
      }
    } catch {
      const why = takeMessages()
        .filter((m) => m.includes('[FATAL]') || m.includes('rror'))
        .join('; ');
      throw new GrammarError('internal', `xgrammar refused the generated grammar: ${why || 'no reason given'}`);
    }
    const compiled = new CompiledGrammar(this.xg, handle, this.maskWords, this.vocabSize, (performance.now() - t0) / 1000);
    this.cache.set(key, compiled);
    if (this.cache.size > this.cacheSize) {
      const [oldest, evicted] = this.cache.entries().next().value as [string, CompiledGrammar];
      this.cache.delete(oldest);
      evicted.release();
    }
    return compiled;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of this.cache.values()) c.release();
    this.cache.clear();
    this.compiler.delete();
    this.info.delete();
  }
}

/** A grammar bound to a vocabulary. Matchers made from it stay valid after it leaves the cache. */
export class CompiledGrammar {
  constructor(
    private readonly xg: XgBinding,
    private readonly handle: XgCompiledGrammar,
    readonly maskWords: number,
    private readonly vocabSize: number,
    /** Wall seconds xgrammar took to compile it. */
    readonly compileSeconds: number,
  ) {}

  /**
   * A matcher at the grammar's start, advanced through `tokens` (the sequence's output so far, when its
   * state must be rebuilt elsewhere). Throws GrammarError if one of them breaks the grammar.
   */
  matcher(tokens: readonly number[] = []): GrammarMatcher {
    const m = new GrammarMatcher(this.xg, new this.xg.GrammarMatcher(this.handle, undefined, false, -1), this.maskWords, this.vocabSize);
    for (let i = 0; i < tokens.length; i++) {
      if (!m.accept(tokens[i]!)) {
        m.dispose();
        throw new GrammarError('internal', `token ${tokens[i]} at output position ${i} does not fit the grammar`);
      }
    }
    return m;
  }

  /** Drops our reference; matchers already made keep the grammar alive inside xgrammar. */
  release(): void {
    this.handle.delete();
  }
}

/**
 * One sequence's position in its grammar. Not garbage-collected (WASM memory): dispose() it when the
 * sequence ends. Speculative decoding uses fillNextTokenMask/accept per draft position, then rollback.
 */
export class GrammarMatcher {
  private accepted = 0;
  private disposed = false;

  constructor(
    private readonly xg: XgBinding,
    private readonly handle: XgGrammarMatcher,
    readonly maskWords: number,
    private readonly vocabSize: number,
  ) {}

  /** Tokens accepted so far (what rollback can undo). */
  get numAccepted(): number {
    return this.accepted;
  }

  /** True once a stop token was accepted: nothing more can follow. */
  get isTerminated(): boolean {
    return this.handle.IsTerminated();
  }

  /** Writes the allowed next tokens into `out` (maskWords words; bit i%32 of word i>>5 set = token i allowed). */
  fillNextTokenMask(out: Int32Array): void {
    if (out.length < this.maskWords) throw new RangeError(`mask has ${out.length} words, needs ${this.maskWords}`);
    const v = this.handle.GetNextTokenBitmask(this.vocabSize);
    try {
      out.set(this.xg.vecIntToView(v));
    } finally {
      v.delete();
    }
  }

  /** Advances by one token; false (state unchanged) if the grammar does not allow it. */
  accept(tokenId: number): boolean {
    const ok = this.handle.AcceptToken(tokenId, false);
    if (ok) this.accepted++;
    else takeMessages(); // xgrammar logs the rejection; nobody reads it
    return ok;
  }

  /** Undoes the last n accepted tokens. */
  rollback(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.accepted) throw new RangeError(`cannot roll back ${n} of ${this.accepted} tokens`);
    if (n === 0) return;
    this.handle.Rollback(n);
    this.accepted -= n;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.handle.delete();
  }
}

/** Whether token `id` is allowed in a mask filled by fillNextTokenMask. */
export function maskAllows(mask: Int32Array, id: number): boolean {
  return ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
}
