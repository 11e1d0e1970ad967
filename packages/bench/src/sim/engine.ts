import type { WorkerRole } from '@pdserve/router';
import { chunkTokenPairs, decodeStepSeconds, type CostModel } from './cost-model';
import type { SimRequest } from './workload';

/** Scheduler limits of one simulated engine; defaults are pdserve's engine defaults. */
export interface EngineLimits {
  /** Most sequences in the running decode batch. Default 64. */
  readonly maxRunning: number;
  /** Most tokens per step (decode tokens + prefill chunks). Default 2048. */
  readonly maxBatchTokens: number;
  /** Longest prefill chunk per sequence per step (as the engine: whether or not decodes run); 0 = no limit. Default 256. */
  readonly prefillChunkTokens: number;
}

export const DEFAULT_ENGINE_LIMITS: EngineLimits = { maxRunning: 64, maxBatchTokens: 2048, prefillChunkTokens: 256 };

/** A request's life in the simulated cluster (mutable: the simulation's own bookkeeping). */
export class Sequence {
  decode!: SimEngine;
  prefill!: SimEngine;
  /** Prefill tokens the router expected; counted as queued until the prefill starts. */
  queuedEstimate = 0;
  prefillStarted = false;
  prefillRemaining = 0;
  lastTokenAt = 0;
  remainingOutput = 0;
  context = 0;
  /** Prompt tokens reused (local cache, store or pool), known once the prefill starts. */
  cachedTokens = 0;
  ttftMs = 0;

  constructor(readonly request: SimRequest) {}
}

/** What the cluster decides when the engine reaches a turning point. */
export interface EngineHooks {
  /** A prefill begins on `engine`: prompt tokens it reuses, and seconds spent fetching from the store. */
  startPrefill(seq: Sequence, engine: SimEngine): { readonly cachedTokens: number; readonly fetchSeconds: number };
  prefillDone(seq: Sequence, engine: SimEngine): void;
  finished(seq: Sequence): void;
  /** One time-between-tokens sample, seconds. */
  tbt(seconds: number): void;
}

/**
 * One worker's engine, stepped: each step decodes one token for every running sequence and computes prefill
 * chunks within the token budget; its time comes from the cost model. Events are per step, never per token.
 */
export class SimEngine {
  private readonly prefillQueue: Sequence[] = [];
  private head = 0;
  private readonly waiting: Sequence[] = [];
  private waitingHead = 0;
  private readonly running: Sequence[] = [];
  private readonly chunkSeqs: Sequence[] = [];
  private readonly chunkTokens: number[] = [];
  private contextTokens = 0;
  busy = false;
  /** Routed here for decode, prefilled elsewhere, KV not yet arrived. */
  incoming = 0;
  queuedPrefillTokens = 0;
  /** Event batch sequence number for the prefix index. */
  eventSeq = 0;
  steps = 0;

  constructor(
    readonly id: string,
    readonly role: WorkerRole,
    private readonly limits: EngineLimits,
    private readonly cost: CostModel,
    private readonly hooks: EngineHooks,
  ) {}

  enqueuePrefill(seq: Sequence, estimatedTokens: number): void {
    seq.queuedEstimate = estimatedTokens;
    this.queuedPrefillTokens += estimatedTokens;
    this.prefillQueue.push(seq);
  }

  /** The sequence has its first token; it joins the running batch at the next step with room. */
  enqueueDecode(seq: Sequence): void {
    this.waiting.push(seq);
  }

  /** Plans and starts a step if idle and there is work; returns its duration in seconds (undefined: idle). */
  startStep(): number | undefined {
    if (this.busy) return undefined;
    const { running, limits, cost } = this;
    while (this.waitingHead < this.waiting.length && running.length < limits.maxRunning) {
      const seq = this.waiting[this.waitingHead++]!;
      running.push(seq);
      this.contextTokens += seq.context;
    }
    compact(this.waiting, this.waitingHead, (h) => (this.waitingHead = h));
    const batch = running.length;
    let budget = limits.maxBatchTokens - batch;
    let prefillTokens = 0;
    let tokenPairs = 0;
    let cachedTokens = 0;
    let fetchSeconds = 0;
    this.chunkSeqs.length = 0;
    this.chunkTokens.length = 0;
    for (let i = this.head; i < this.prefillQueue.length && budget > 0; i++) {
      const seq = this.prefillQueue[i]!;
      if (!seq.prefillStarted) {
        const hit = this.hooks.startPrefill(seq, this);
        seq.prefillStarted = true;
        seq.prefillRemaining = seq.request.promptTokens - hit.cachedTokens;
        this.queuedPrefillTokens += seq.prefillRemaining - seq.queuedEstimate;
        cachedTokens += hit.cachedTokens;
        fetchSeconds += hit.fetchSeconds;
      }
      let chunk = Math.min(seq.prefillRemaining, budget);
      if (limits.prefillChunkTokens > 0) chunk = Math.min(chunk, limits.prefillChunkTokens);
      this.chunkSeqs.push(seq);
      this.chunkTokens.push(chunk);
      budget -= chunk;
      prefillTokens += chunk;
      tokenPairs += chunkTokenPairs(seq.request.promptTokens - seq.prefillRemaining, chunk);
    }
    if (batch === 0 && this.chunkSeqs.length === 0) return undefined;
    this.busy = true;
    this.steps++;
    return (
      decodeStepSeconds(cost, batch, this.contextTokens) +
      (this.chunkSeqs.length > 0 ? cost.prefillStepSeconds : 0) +
      prefillTokens * cost.prefillSecondsPerToken +
      tokenPairs * cost.prefillSecondsPerTokenPair +
      cachedTokens * cost.prefillSecondsPerCachedToken +
      fetchSeconds
    );
  }

  /** Ends the current step at `now`: one token per running sequence, prefill chunks applied. */
  finishStep(now: number): void {
    this.busy = false;
    const running = this.running;
    for (let i = running.length - 1; i >= 0; i--) {
      const seq = running[i]!;
      this.hooks.tbt(now - seq.lastTokenAt);
      seq.lastTokenAt = now;
      seq.remainingOutput--;
      seq.context++;
      this.contextTokens++;
      if (seq.remainingOutput > 0) continue;
      running[i] = running[running.length - 1]!;
      running.pop();
      this.contextTokens -= seq.context;
      this.hooks.finished(seq);
    }
    const k = this.chunkSeqs.length;
    if (k === 0) return;
    const done: Sequence[] = [];
    for (let j = 0; j < k; j++) {
      const seq = this.chunkSeqs[j]!;
      seq.prefillRemaining -= this.chunkTokens[j]!;
      this.queuedPrefillTokens -= this.chunkTokens[j]!;
      if (seq.prefillRemaining === 0) done.push(seq);
    }
    if (done.length > 0) {
      // Chunks cover queue[head, head + k): drop the finished ones there, keeping order.
      const q = this.prefillQueue;
      let w = this.head + k;
      for (let j = this.head + k - 1; j >= this.head; j--) if (q[j]!.prefillRemaining > 0) q[--w] = q[j]!;
      this.head = w;
      compact(q, this.head, (h) => (this.head = h));
      for (const seq of done) this.hooks.prefillDone(seq, this);
    }
    this.chunkSeqs.length = 0;
    this.chunkTokens.length = 0;
  }

  get runningCount(): number {
    return this.running.length;
  }

  /** Sequences admitted but not running: waiting for a batch slot, for prefill here, or for KV from elsewhere. */
  get waitingCount(): number {
    return this.waiting.length - this.waitingHead + this.prefillQueue.length - this.head + this.incoming;
  }

  get idle(): boolean {
    return !this.busy && this.running.length === 0 && this.waitingCount === 0;
  }
}

/** Drops a consumed queue head once it is large, so FIFO arrays stay O(1) amortised. */
function compact<T>(q: T[], head: number, setHead: (h: number) => void): void {
  if (head > 1024 && head * 2 > q.length) {
    q.splice(0, head);
    setHead(0);
  }
}
