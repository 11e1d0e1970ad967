// The draft model of speculative decoding: its own session (on the target's model thread) and KV pool,
// one block table per sequence. Its KV is private (never published to any prefix cache) and is built lazily: the first time
// a sequence speculates, the draft prefills its whole history (on a decode worker that imported the
// prompt's target KV, that is the draft's prompt prefill), and after that each step only feeds what the
// target accepted since.
import { BlockPool, type KvLayout } from '@pdserve/kv-cache';
import {
  checkDraftCompatible,
  kvBytesPerToken,
  loadModelSpec,
  ModelLoadError,
  type ModelSpec,
  type RunnerOptions,
  type Sampler,
  type SamplingParams,
} from '@pdserve/model';
import type { ExecRow, ThreadExecutor } from './executor';
import type { Proposal } from './speculative';

/** A sequence's history as the draft sees it. */
export interface DraftInput {
  readonly seqId: number;
  readonly tokens: readonly number[];
  readonly prompt: readonly number[];
  readonly output: readonly number[];
  readonly sampler: Sampler;
  readonly params: SamplingParams;
  /** Tokens to propose (≥ 1). */
  readonly k: number;
}

interface DraftState {
  readonly blocks: number[];
  /** Leading tokens of the sequence whose KV the draft holds. */
  computed: number;
}

/** A sequence proposing this step: its proposals so far and, when sampling, the distribution of each. */
interface Active {
  readonly in: DraftInput;
  readonly st: DraftState;
  readonly tokens: number[];
  readonly dists: Float64Array[] | undefined;
}

/** More new tokens than this for one sequence go through a prefill batch before the decode rounds. */
const CATCH_UP_TOKENS = 4;

/** Tokens of the sequence the draft has not computed yet. */
function behind(a: Active): number {
  return a.in.tokens.length - a.st.computed;
}

/** The draft row that feeds it every token of the sequence it has not seen. */
function unseenRow(a: Active): ExecRow {
  return { seqId: a.in.seqId, tokenIds: a.in.tokens.slice(a.st.computed), pastLen: a.st.computed, blockTable: a.st.blocks };
}

/** A draft model loaded and checked, its KV pool allocated: what the model thread needs to host it (ExecutorInit.draft). */
export interface DraftLoad {
  readonly spec: ModelSpec;
  readonly pool: BlockPool;
  readonly runner: RunnerOptions;
}

/** Rows of a greedy proposal left to the model thread to run just before the verify forward (ExecBatch.draftFirst). */
export interface DeferredProposal {
  readonly seqIds: readonly number[];
  readonly rows: readonly ExecRow[];
  readonly rounds: readonly number[];
  /** Rows that catch up (ExecBatch.catchUp): many tokens the draft has not seen, prefilled there first. */
  readonly catchUp: readonly boolean[];
}

/** What propose() made: proposals, rows left to the model thread, and the draft rounds it ran here (after any catch-up). */
export interface Proposed {
  readonly proposals: Map<number, Proposal>;
  readonly deferred?: DeferredProposal;
  readonly rounds: number;
}

export class DraftModel {
  private readonly states = new Map<number, DraftState>();
  /** Tokens the draft prefilled to catch up (its prompt KV, mostly). */
  catchUpTokens = 0;
  /** Wall seconds in propose(), and of them inside the draft's forwards (on its thread). */
  proposeSeconds = 0;
  forwardSeconds = 0;
  /** Seconds the last propose() spent catching up (a one-off per sequence, not the per-step cost). */
  lastCatchUpSeconds = 0;

  /** `executor`: the target's model thread, which hosts the draft too (see load). */
  constructor(
    readonly spec: ModelSpec,
    private readonly executor: ThreadExecutor,
    readonly pool: BlockPool,
  ) {}

  /**
   * Loads the draft's config, refusing one whose vocabulary differs from the target's, and sizes its KV
   * pool. Its session runs on the target's model thread (ExecutorInit.draft): draft and target take turns
   * anyway, and one thread saves a round trip between threads per step (the draft's greedy rounds and the
   * verify forward go as one batch). No spin-waiting (which would take the cores from the target); as many
   * intra-op threads as the target (every core) unless told (one was measured slower at batch 8: its LM
   * head is a GEMM there).
   */
  static load(
    target: ModelSpec,
    dir: string,
    blockSize: number,
    targetBlocks: number,
    kvCacheBytes: number | undefined,
    runner: RunnerOptions,
    threads = 0,
  ): DraftLoad {
    let spec: ModelSpec;
    try {
      spec = loadModelSpec(dir);
    } catch (err) {
      throw new ModelLoadError(`speculative draft model: ${(err as Error).message}`);
    }
    checkDraftCompatible(target, spec);
    const layout: KvLayout = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize };
    const pool = BlockPool.fromBudget(layout, kvCacheBytes ?? targetBlocks * blockSize * kvBytesPerToken(spec));
    return { spec, pool, runner: { ...runner, intraOpThreads: threads, interOpThreads: 1, allowSpinning: false } };
  }

  /** Sequences holding draft KV (for tests: 0 once every sequence is done). */
  get numSequences(): number {
    return this.states.size;
  }

  /** The sequence's tokens from `validLen` on changed (rejected, or it was preempted): the draft's KV past them is stale. */
  truncate(seqId: number, validLen: number): void {
    const s = this.states.get(seqId);
    if (s) s.computed = Math.min(s.computed, validLen);
  }

  release(seqId: number): void {
    const s = this.states.get(seqId);
    if (!s) return;
    for (let i = s.blocks.length - 1; i >= 0; i--) this.pool.release(s.blocks[i]!);
    this.states.delete(seqId);
  }

  /** Releases every sequence not in `live`. */
  retain(live: ReadonlySet<number>): void {
    for (const id of [...this.states.keys()]) if (!live.has(id)) this.release(id);
  }

  /**
   * Proposes up to `k` tokens per sequence: one draft forward per token, all sequences batched. A
   * sequence the draft's pool has no room for gets an empty proposal (it decodes without speculating).
   */
  async propose(inputs: readonly DraftInput[]): Promise<Proposed> {
    const t0 = performance.now();
    try {
      return await this.proposeRounds(inputs);
    } finally {
      this.proposeSeconds += (performance.now() - t0) / 1000;
    }
  }

  /** The model thread ran a deferred proposal (before the verify forward), taking `seconds`. */
  ranDeferred(seconds: number): void {
    this.forwardSeconds += seconds;
    this.proposeSeconds += seconds;
  }

  private async proposeRounds(inputs: readonly DraftInput[]): Promise<Proposed> {
    const V = this.spec.vocabSize;
    const bs = this.pool.layout.blockSize;
    const out = new Map<number, Proposal>();
    const active: Active[] = [];
    for (const input of inputs) {
      // A draft with a shorter context than the target's proposes nothing past it.
      if (input.tokens.length + input.k > this.spec.maxPositionEmbeddings) {
        this.release(input.seqId);
        out.set(input.seqId, { tokens: [] });
        continue;
      }
      let st = this.states.get(input.seqId);
      if (!st) this.states.set(input.seqId, (st = { blocks: [], computed: 0 }));
      // KV for every token and every proposal but the last.
      const need = Math.ceil((input.tokens.length + input.k - 1) / bs);
      while (st.blocks.length < need) {
        const id = this.pool.allocate();
        if (id === undefined) break;
        st.blocks.push(id);
      }
      if (st.blocks.length < need) {
        this.release(input.seqId);
        out.set(input.seqId, { tokens: [] });
        continue;
      }
      active.push({ in: input, st, tokens: [], dists: input.sampler.isGreedy ? undefined : [] });
    }
    // Plain greedy requests: the draft's argmax is what their sampler would pick, so their catch-up and
    // rounds run on the model thread in one go, just before the verify forward (see ExecBatch.draftFirst):
    // one round trip between threads for the whole step. Others (sampling, penalties, bias) sample here.
    const onThread = active.filter((a) => a.in.sampler.choosesRawArgmax);
    const here = active.filter((a) => !onThread.includes(a));
    let deferred: DeferredProposal | undefined;
    if (onThread.length > 0) {
      deferred = {
        seqIds: onThread.map((a) => a.in.seqId),
        rows: onThread.map(unseenRow),
        rounds: onThread.map((a) => a.in.k),
        catchUp: onThread.map((a) => behind(a) > CATCH_UP_TOKENS),
      };
      for (const a of onThread) {
        if (behind(a) > CATCH_UP_TOKENS) this.catchUpTokens += behind(a);
        a.st.computed = a.in.tokens.length + a.in.k - 1;
      }
    }
    // A sequence far behind catches up in one prefill batch, through its last token: that forward's logits
    // give its first proposal, so the catch-up costs no draft round of its own.
    const catchUp = here.filter((a) => behind(a) > CATCH_UP_TOKENS);
    this.lastCatchUpSeconds = 0;
    if (catchUp.length > 0) {
      const t0 = performance.now();
      const res = await this.executor.run({ kind: 'prefill', rows: catchUp.map(unseenRow), model: 'draft' });
      this.forwardSeconds += res.execSeconds;
      catchUp.forEach((a, i) => {
        this.catchUpTokens += behind(a);
        a.st.computed = a.in.tokens.length;
        this.draw(a, res.logits.subarray(i * V, (i + 1) * V));
      });
      this.lastCatchUpSeconds = (performance.now() - t0) / 1000;
    }
    const maxK = Math.max(0, ...here.map((a) => a.in.k));
    let rounds = 0;
    for (let round = 0; round < maxK; round++) {
      // A row that caught up has its first token already: it joins at round 1.
      const live = here.filter((a) => a.tokens.length === round && round < a.in.k);
      if (live.length === 0) continue;
      const rows: ExecRow[] = live.map((a) => {
        const len = a.in.tokens.length;
        // Round 0 feeds what the draft has not seen (the last token, or a few the target accepted); then its own proposals.
        const tokenIds = round === 0 ? a.in.tokens.slice(a.st.computed) : [a.tokens[round - 1]!];
        return { seqId: a.in.seqId, tokenIds, pastLen: round === 0 ? a.st.computed : len + round - 1, blockTable: a.st.blocks };
      });
      const res = await this.executor.run({ kind: 'decode', rows, model: 'draft' });
      rounds++;
      this.forwardSeconds += res.execSeconds;
      live.forEach((a, i) => {
        a.st.computed = a.in.tokens.length + round;
        this.draw(a, res.logits.subarray(i * V, (i + 1) * V));
      });
    }
    // Greedy rows deferred to the model thread have no tokens yet: theirs come with the verify's result.
    for (const a of active) out.set(a.in.seqId, { tokens: a.tokens, dists: a.dists });
    return { proposals: out, deferred, rounds };
  }

  /** The next proposal from the draft's logits after the tokens so far (sampled as the request samples, q kept). */
  private draw(a: Active, logits: Float32Array): void {
    const seen = [...a.in.output, ...a.tokens];
    if (a.dists) {
      const q = a.in.sampler.distribution(logits, a.in.prompt, seen, new Float64Array(this.spec.vocabSize));
      a.dists.push(q);
      a.tokens.push(a.in.sampler.drawFrom(q));
    } else a.tokens.push(a.in.sampler.sample(logits, a.in.prompt, seen).tokenId);
  }

  /** Stops the draft (its session on the model thread is released); proposing fails from then on. */
  async close(): Promise<void> {
    await this.executor.releaseDraft();
  }
}
