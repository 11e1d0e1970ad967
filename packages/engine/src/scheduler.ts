import { blocksBeforeLastToken, type BlockPool } from '@pdserve/kv-cache';
import type { Sequence } from './sequence';

export interface SchedulerConfig {
  /** Most sequences in the running batch. */
  readonly maxNumSeqs: number;
  /** Most tokens computed in one step: one per decode plus every prefill chunk. */
  readonly maxNumBatchedTokens: number;
  /** Longest prefill chunk per sequence per step; 0 turns chunking off (whole prompt at once). */
  readonly prefillChunkTokens: number;
  /** Free blocks kept back when admitting, so running decodes rarely need preemption. */
  readonly watermarkBlocks: number;
}

/** Compute tokens[start, end) of seq; sample a token if end reaches the end of its tokens. */
export interface PrefillChunk {
  readonly seq: Sequence;
  readonly start: number;
  readonly end: number;
}

/** What one step runs: the scheduler's whole decision, consumed by the engine's executor. */
export interface SchedulerOutput {
  readonly decodes: readonly Sequence[];
  readonly prefills: readonly PrefillChunk[];
  readonly preempted: readonly Sequence[];
  /** Newly admitted sequences and the prompt tokens each took from the prefix cache. */
  readonly admitted: readonly { readonly seq: Sequence; readonly cachedTokens: number }[];
  /**
   * Admitted with KV computed elsewhere: blocks are allocated (with a slot for the token after the prompt),
   * the engine copies the KV in and decodes each in this same step.
   */
  readonly imports: readonly Sequence[];
  /** Admitted export-only sequences (exportKv.withoutToken) whose whole prompt was cached: nothing to compute, only to export. */
  readonly cachedExports: readonly Sequence[];
}

/**
 * A streamed export (prefill role) splits its final chunk when at least this many full blocks (of
 * block_size tokens) would precede the block holding the prompt's last token: they are computed first
 * and stream to the decode worker while a forward of that one block runs, so it alone is left to send,
 * import and gather after the first token. Fewer blocks: one more forward costs more than it saves.
 */
export const STREAMED_SPLIT_MIN_BLOCKS = 4;

/**
 * Continuous batching with chunked prefill, in the spirit of vLLM v1: every step decodes every running
 * sequence that is past its prompt, then spends what is left of the token budget on prefill chunks
 * (already-admitted prompts first, then new ones in priority order). When blocks run out, the newest
 * running sequence is preempted and later recomputed (its full blocks usually survive in the prefix cache).
 */
export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];

  constructor(
    private readonly pool: BlockPool,
    private readonly cfg: SchedulerConfig,
  ) {}

  add(seq: Sequence): void {
    seq.status = 'waiting';
    insertByPriority(this.waiting, seq);
  }

  /** Takes a sequence off the schedule, keeping its blocks (remove() frees them later); returns whether it was on it. */
  detach(seq: Sequence): boolean {
    const wi = this.waiting.indexOf(seq);
    if (wi >= 0) this.waiting.splice(wi, 1);
    const ri = this.running.indexOf(seq);
    if (ri >= 0) this.running.splice(ri, 1);
    return wi >= 0 || ri >= 0;
  }

  /** Removes a sequence wherever it is and frees its blocks; returns whether it was known. */
  remove(seq: Sequence): boolean {
    const known = this.detach(seq);
    this.freeBlocks(seq);
    return known;
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  schedule(): SchedulerOutput {
    const preempted: Sequence[] = [];
    const decodes = this.scheduleDecodes(preempted);
    let budget = this.cfg.maxNumBatchedTokens - decodes.reduce((n, s) => n + 1 + s.lookahead, 0);
    const prefills: PrefillChunk[] = [];
    const admitted: { seq: Sequence; cachedTokens: number }[] = [];
    const imports: Sequence[] = [];
    const cachedExports: Sequence[] = [];
    /** The head of the queue starts running, with `cachedTokens` of its prompt from the prefix cache. */
    const admit = (seq: Sequence, cachedTokens: number): void => {
      this.waiting.shift();
      seq.status = 'running';
      this.running.push(seq);
      admitted.push({ seq, cachedTokens });
    };

    for (const seq of this.running) {
      if (!seq.isPrefill || budget <= 0) continue;
      const chunk = this.chunkFor(seq, budget, prefills.length === 0);
      if (chunk === 0) break;
      prefills.push({ seq, start: seq.numComputed, end: seq.numComputed + chunk });
      budget -= chunk;
    }
    while (this.waiting.length > 0 && this.running.length < this.cfg.maxNumSeqs && budget > 0) {
      const seq = this.waiting[0]!;
      let cached = this.acquirePrefix(seq);
      if (seq.exportOnly && seq.numComputed === seq.tokens.length) {
        admit(seq, cached);
        cachedExports.push(seq);
        continue;
      }
      if (seq.prefilled) {
        const ok = this.admitImport(seq, this.running.length > 0 ? this.cfg.watermarkBlocks : 0);
        if (ok === 'wait') break;
        if (ok === 'fallback') cached = seq.numComputed;
        if (ok === 'admitted') {
          admit(seq, cached);
          imports.push(seq);
          budget -= 1; // its first decode
          continue;
        }
      }
      const chunk = this.chunkFor(seq, budget, prefills.length === 0, this.running.length > 0 ? this.cfg.watermarkBlocks : 0);
      if (chunk === 0) {
        this.freeBlocks(seq);
        break;
      }
      admit(seq, cached);
      prefills.push({ seq, start: seq.numComputed, end: seq.numComputed + chunk });
      budget -= chunk;
    }
    if (decodes.length === 0 && prefills.length === 0 && imports.length === 0 && cachedExports.length === 0 && this.running.length > 0) {
      // Every running prompt is stuck waiting for blocks held by the others: make room.
      preempted.push(this.preemptNewest());
    }
    return { decodes, prefills, preempted, admitted, imports, cachedExports };
  }

  /**
   * A prefilled sequence needs its first `fromBlock` blocks from the local prefix cache (the prefill
   * side skipped them) and fresh blocks for the rest. If the local ones were evicted meanwhile, the
   * imported KV is dropped and the prompt is prefilled here instead: slower, never wrong.
   */
  private admitImport(seq: Sequence, reserve: number): 'admitted' | 'wait' | 'fallback' {
    const p = seq.prefilled!;
    const bs = seq.blockSize;
    const promptBlocks = Math.ceil(seq.promptLen / bs);
    if (seq.blockTable.length < p.fromBlock || p.fromBlock + p.blocks.length !== promptBlocks || seq.tokens.length !== seq.promptLen) {
      this.freeBlocks(seq);
      seq.prefilled = undefined;
      seq.numComputed = 0;
      this.acquirePrefix(seq);
      return 'fallback';
    }
    // Hits past fromBlock are given back: the imported copies of those blocks are used instead.
    while (seq.blockTable.length > p.fromBlock) this.pool.release(seq.blockTable.pop()!);
    // The prompt's blocks and the slot of the token after it: the engine decodes it in the step that imports it.
    const need = Math.ceil((seq.promptLen + 1) / bs) - seq.blockTable.length;
    if (this.pool.numFree - reserve < need) {
      this.freeBlocks(seq);
      return 'wait';
    }
    for (let i = 0; i < need; i++) seq.blockTable.push(this.pool.allocate()!);
    seq.numPublished = p.fromBlock;
    return 'admitted';
  }

  /**
   * Gives every decoding sequence a slot for its next token; when out of blocks, preempts the least urgent
   * (highest priority value: flex before default before priority), newest first among equals.
   */
  private scheduleDecodes(preempted: Sequence[]): Sequence[] {
    const decodes: Sequence[] = [];
    for (let i = 0; i < this.running.length; i++) {
      const seq = this.running[i]!;
      if (seq.isPrefill) continue;
      const needBlock = seq.blockTable.length * seq.blockSize <= seq.numComputed;
      if (needBlock) {
        while (this.pool.numFree === 0 && seq.status === 'running') {
          const j = this.victimIndex();
          const victim = this.preemptAt(j);
          preempted.push(victim);
          const k = decodes.indexOf(victim);
          if (k >= 0) decodes.splice(k, 1);
          if (j <= i) i--; // the sequences after it moved down one
        }
        if (seq.status !== 'running') continue;
        seq.blockTable.push(this.pool.allocate()!);
      }
      if (seq.lookahead > 0) this.reserveLookahead(seq);
      decodes.push(seq);
    }
    return decodes;
  }

  /**
   * Blocks for the positions of `seq`'s speculated tokens, from free blocks above the watermark only
   * (speculation never preempts anyone); the lookahead shrinks to what fits.
   */
  private reserveLookahead(seq: Sequence): void {
    const bs = seq.blockSize;
    const want = seq.numComputed + 1 + seq.lookahead;
    while (seq.blockTable.length * bs < want && this.pool.numFree > this.cfg.watermarkBlocks) seq.blockTable.push(this.pool.allocate()!);
    seq.lookahead = Math.max(0, Math.min(seq.lookahead, seq.blockTable.length * bs - seq.numComputed - 1));
  }

  /** After a verify step: gives back blocks past the sequence's tokens (held for rejected speculation). */
  trimBlocks(seq: Sequence): void {
    const keep = Math.max(seq.numPublished, Math.ceil(seq.tokens.length / seq.blockSize));
    while (seq.blockTable.length > keep) this.pool.release(seq.blockTable.pop()!);
  }

  /**
   * Tokens of `seq` to prefill this step within `budget`, allocating their blocks. 0 when nothing fits.
   * With chunking off a prompt goes whole or not at all, and the first one may exceed the budget.
   */
  private chunkFor(seq: Sequence, budget: number, first: boolean, reserve = 0): number {
    const remaining = seq.tokens.length - seq.numComputed;
    const cap = this.cfg.prefillChunkTokens;
    let chunk = cap > 0 ? Math.min(remaining, cap, budget) : remaining;
    if (cap === 0 && remaining > budget && !first) return 0;
    const bs = seq.blockSize;
    if (cap > 0 && chunk === remaining && seq.onExportBlocks !== undefined && !seq.exportOnly) {
      const tail = seq.tokens.length - blocksBeforeLastToken(seq.tokens.length, bs) * bs;
      if (remaining - tail >= STREAMED_SPLIT_MIN_BLOCKS * bs) chunk = remaining - tail;
    }
    const have = seq.blockTable.length * bs - seq.numComputed;
    const room = have + Math.max(0, this.pool.numFree - reserve) * bs;
    if (chunk > room) {
      if (cap === 0) return 0;
      chunk = room;
    }
    if (chunk <= 0) return 0;
    const needBlocks = Math.ceil((seq.numComputed + chunk) / bs) - seq.blockTable.length;
    for (let i = 0; i < needBlocks; i++) seq.blockTable.push(this.pool.allocate()!);
    return chunk;
  }

  /**
   * Takes references on the cached blocks of seq's longest cached prefix. At least one token is always
   * left to compute, because the next token's logits come from computing the last one; an export-only
   * sequence samples nothing, and may find its whole prompt cached.
   */
  private acquirePrefix(seq: Sequence): number {
    // A cached block has no logits: prompt logprobs need the prompt computed.
    const maxBlocks = seq.prefilled
      ? seq.prefilled.fromBlock
      : seq.collectsPromptLogprobs
        ? 0
        : Math.floor((seq.tokens.length - (seq.exportOnly ? 0 : 1)) / seq.blockSize);
    for (let i = 0; i < maxBlocks; i++) {
      const id = this.pool.acquireCached(seq.blockHash(i));
      if (id === undefined) break;
      seq.blockTable.push(id);
    }
    seq.numComputed = seq.blockTable.length * seq.blockSize;
    seq.numPublished = seq.blockTable.length;
    return seq.numComputed;
  }

  private preemptNewest(): Sequence {
    return this.preemptAt(this.victimIndex());
  }

  /** The running sequence to preempt: the highest priority value, and the newest (last admitted) among those. */
  private victimIndex(): number {
    let j = this.running.length - 1;
    for (let k = j - 1; k >= 0; k--) if (this.running[k]!.priority > this.running[j]!.priority) j = k;
    return j;
  }

  private preemptAt(j: number): Sequence {
    const [victim] = this.running.splice(j, 1);
    this.freeBlocks(victim!);
    this.add(victim!);
    return victim!;
  }

  /** Frees in reverse so that a prefix's tail is evicted before its head. */
  private freeBlocks(seq: Sequence): void {
    for (let i = seq.blockTable.length - 1; i >= 0; i--) this.pool.release(seq.blockTable[i]!);
    seq.blockTable.length = 0;
    seq.numComputed = 0;
    seq.numPublished = 0;
  }
}

function insertByPriority(queue: Sequence[], seq: Sequence): void {
  let i = queue.length;
  while (
    i > 0 &&
    (queue[i - 1]!.priority > seq.priority || (queue[i - 1]!.priority === seq.priority && queue[i - 1]!.arrival > seq.arrival))
  )
    i--;
  queue.splice(i, 0, seq);
}
