// Structured output inside the engine: a grammar compiler for the model's vocabulary (built on the first
// constrained request), and per constrained sequence a matcher and its next-token mask. The step loop
// fills the masks while the model thread runs the forward, so the sampler finds them ready.
import { GrammarCompiler, GrammarError, type GrammarMatcher } from '@pdserve/grammar';
import type { ModelSpec, StructuredOutput } from '@pdserve/model';
import { EngineError } from '@pdserve/contracts';

interface Constrained {
  readonly matcher: GrammarMatcher;
  readonly mask: Int32Array;
}

export interface StructuredOutputStats {
  /** Grammars compiled (cache misses) and the wall seconds they took on the engine's thread. */
  readonly compiles: number;
  readonly compileSeconds: number;
  /** Next-token masks computed and the seconds they took (overlapped with the forward). */
  readonly masks: number;
  readonly maskSeconds: number;
}

export class StructuredOutputs {
  private compiler: GrammarCompiler | undefined;
  private loading: Promise<GrammarCompiler> | undefined;
  private readonly bySeq = new Map<number, Constrained>();
  private counters = { compiles: 0, compileSeconds: 0, masks: 0, maskSeconds: 0 };
  /** Compiled grammars already counted (the compiler's cache hands the same one back). */
  private readonly seen = new WeakSet<object>();

  constructor(private readonly spec: ModelSpec) {}

  /** Loads xgrammar and the vocabulary once (~0.2-0.5 s); later calls return at once. */
  async ready(): Promise<void> {
    if (this.compiler) return;
    this.loading ??= GrammarCompiler.forModel(this.spec.dir, this.spec.vocabSize, this.spec.eosTokenIds);
    this.compiler = await this.loading;
  }

  /**
   * At admission: the constraint compiled (or taken from the cache) and a matcher advanced through the
   * tokens the sequence already generated (none, unless it moved here from another worker).
   */
  admit(seqId: number, constraint: StructuredOutput, output: readonly number[]): void {
    if (!this.compiler) throw new EngineError('internal', 'structured output requested before the grammar compiler was loaded');
    try {
      const compiled = this.compiler.compile(constraint);
      if (compiled.compileSeconds > 0 && !this.seen.has(compiled)) {
        this.seen.add(compiled);
        this.counters.compiles += 1;
        this.counters.compileSeconds += compiled.compileSeconds;
      }
      this.bySeq.set(seqId, { matcher: compiled.matcher(output), mask: new Int32Array(this.compiler.maskWords) });
    } catch (err) {
      if (err instanceof GrammarError) {
        throw new EngineError(err.code === 'internal' ? 'internal' : 'invalid_request', err.message, 'response_format');
      }
      throw err;
    }
  }

  isConstrained(seqId: number): boolean {
    return this.bySeq.has(seqId);
  }

  /** Computes the next-token mask of each listed sequence that has a grammar. */
  fillMasks(seqIds: Iterable<number>): void {
    for (const id of seqIds) {
      const c = this.bySeq.get(id);
      if (!c) continue;
      const t0 = performance.now();
      c.matcher.fillNextTokenMask(c.mask);
      this.counters.maskSeconds += (performance.now() - t0) / 1000;
      this.counters.masks += 1;
    }
  }

  /** The mask for the sequence's next token, as filled by fillMasks; undefined if unconstrained. */
  mask(seqId: number): Int32Array | undefined {
    return this.bySeq.get(seqId)?.mask;
  }

  /** Advances the sequence's grammar; false if the token breaks it (it came from elsewhere unconstrained). */
  accept(seqId: number, tokenId: number): boolean {
    const c = this.bySeq.get(seqId);
    return c === undefined || c.matcher.accept(tokenId);
  }

  /** True when the grammar accepted its stop token: the sequence is complete. */
  isTerminated(seqId: number): boolean {
    return this.bySeq.get(seqId)?.matcher.isTerminated ?? false;
  }

  /** The sequence's matcher, for callers that verify several positions (speculative decoding). */
  matcher(seqId: number): GrammarMatcher | undefined {
    return this.bySeq.get(seqId)?.matcher;
  }

  release(seqId: number): void {
    this.bySeq.get(seqId)?.matcher.dispose();
    this.bySeq.delete(seqId);
  }

  stats(): StructuredOutputStats {
    return { ...this.counters };
  }

  dispose(): void {
    for (const id of [...this.bySeq.keys()]) this.release(id);
    this.compiler?.dispose();
  }
}
