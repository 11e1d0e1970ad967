import { Worker } from 'node:worker_threads';
import type { KvLayout } from '@pdserve/kv-cache';
import { ModelRunner, type LayerKv, type ModelSpec, type RunnerOptions } from '@pdserve/model';
import { gatherPast, scatterNew } from './kv-io';
import { ResidentKv } from './resident-kv';

/** One sequence's share of a forward: its new tokens follow `pastLen` tokens already in its blocks. */
export interface ExecRow {
  readonly seqId: number;
  readonly tokenIds: readonly number[];
  /**
   * Tokens already in its blocks. In a decode batch it may be lower than the last step left (a rollback:
   * the KV past it is ignored and later overwritten).
   */
  readonly pastLen: number;
  /** Blocks covering positions [0, pastLen + tokenIds.length). */
  readonly blockTable: readonly number[];
  /** Logits of this many trailing tokens are returned (K+1 to verify K draft tokens); default 1. */
  readonly numLogits?: number;
  /** Decode: the streamed prompt this row's leading KV was staged as (StagedBlocks), when it joins the batch. */
  readonly stagedKey?: string;
}

/** A streamed prompt's full blocks, in block layout, to stage for its first decode (ResidentKv.stage). */
export interface StagedBlocks {
  readonly key: string;
  readonly promptLen: number;
  readonly fromBlock: number;
  readonly blocks: readonly Float32Array[];
}

export interface ExecBatch {
  /** 'decode' rows keep their KV resident between batches; any number of new tokens per row. */
  readonly kind: 'prefill' | 'decode';
  readonly rows: readonly ExecRow[];
  /**
   * Decode only (a draft model proposing for greedy requests): row i goes on for greedyRounds[i] forwards
   * in all, each feeding the argmax of the last one's logits, on the model thread (one round trip to it
   * instead of one per token). The result then has `tokens` (the argmaxes) and no logits.
   */
  readonly greedyRounds?: readonly number[];
  /**
   * With greedyRounds: rows marked true first run as a prefill batch (a catch-up of many tokens, which a
   * decode batch would pad every row to), whose last logits give the row's first token; their rounds go on
   * from there.
   */
  readonly catchUp?: readonly boolean[];
  /**
   * A decode batch whose rows all sample greedily and need nothing else of the logits: the result has each
   * row's argmax (ExecResult.argmax) and empty logits.
   */
  readonly argmaxOnly?: boolean;
  /** Which of the thread's models runs it: the target (default) or the speculative draft (ExecutorInit.draft). */
  readonly model?: 'target' | 'draft';
  /**
   * A target decode batch only: first the draft runs these greedy rounds on the same thread (as a batch
   * with greedyRounds), then row draftFirst.into[i] of this batch gets the draft's tokens for draftFirst.rows[i]
   * appended to its tokenIds and as many more logits: the proposals and their verify forward in one round
   * trip. Should the draft fail, the batch runs without them (ExecResult.draftError).
   */
  readonly draftFirst?: {
    readonly rows: readonly ExecRow[];
    readonly rounds: readonly number[];
    readonly into: readonly number[];
    readonly catchUp?: readonly boolean[];
  };
}

export interface ExecResult {
  /** Logits of each row's last numLogits tokens: rows in the batch's order, then positions in order. */
  readonly logits: Float32Array;
  /** With argmaxOnly: the argmax of each of those rows of logits, in the same order (the logits are then empty). */
  readonly argmax?: Int32Array;
  /** Seconds inside session.run, and for the whole batch including moving KV. */
  readonly runSeconds: number;
  readonly execSeconds: number;
  /** Tokens of KV copied out of blocks into the model's dense input (0 for a decode batch like the last one). */
  readonly gatheredTokens: number;
  /** With greedyRounds: each row's argmax tokens, one per round; with draftFirst: the draft's tokens per draftFirst row. */
  readonly tokens?: readonly (readonly number[])[];
  /** With greedyRounds: seconds of the catch-up prefill (in execSeconds), and the decode rounds run after it. */
  readonly catchUpSeconds?: number;
  readonly rounds?: number;
  /** With draftFirst: seconds of the draft's work (included in execSeconds), or why the draft failed. */
  readonly draftSeconds?: number;
  readonly draftError?: string;
  /** With draftFirst: of draftSeconds, the draft's catch-up prefill; and the draft's decode rounds (see catchUpSeconds, rounds). */
  readonly draftCatchUpSeconds?: number;
  readonly draftRounds?: number;
}

/**
 * A prefill's dense past is gathered into buffers kept for the next prefill, up to this many bytes (K and V,
 * every layer); a larger one gets fresh buffers, dropped after it. Fresh memory is slow on some hosts: on a VM
 * here, a 960-token past at the preset took 33–43 ms to gather into new buffers and 16–21 ms into kept ones.
 */
const PREFILL_PAST_KEEP_BYTES = 256 * 2 ** 20;
/** Kept buffers are made this much larger than the past that needed them, so that a slightly longer one fits. */
const PREFILL_PAST_HEADROOM = 1.25;

/**
 * Runs batches against the model and the KV pool, and writes each forward's new KV into blocks. A
 * prefill batch gathers its rows' past from blocks. Decode batches run on ResidentKv: each decode's new KV
 * is appended to the past in place, and only sequences that joined, left or rolled back move.
 */
export class BatchExecutor {
  private readonly resident: ResidentKv;
  /** Per layer, K and V: the buffers prefills gather their past into (see PREFILL_PAST_KEEP_BYTES). */
  private prefillPast: LayerKv[] = [];

  constructor(
    private readonly runner: ModelRunner,
    private readonly layout: KvLayout,
    private readonly pool: Float32Array,
  ) {
    this.resident = new ResidentKv(layout, pool);
  }

  stage(s: StagedBlocks): void {
    this.resident.stage(s.key, s.promptLen, s.fromBlock, s.blocks);
  }

  async run(batch: ExecBatch): Promise<ExecResult> {
    try {
      if (batch.greedyRounds) return await this.greedyRounds(batch.rows, batch.greedyRounds, batch.catchUp);
      return batch.kind === 'decode' ? await this.decode(batch.rows, batch.argmaxOnly === true) : await this.prefill(batch.rows);
    } catch (err) {
      this.resident.clear();
      throw err;
    }
  }

  private async prefill(rows: readonly ExecRow[]): Promise<ExecResult> {
    const t0 = performance.now();
    // Their KV changes outside decode (a preempted sequence is recomputed): decode copies it in again.
    for (const r of rows) this.resident.forget(r.seqId);
    const width = Math.max(...rows.map((r) => r.pastLen));
    const past =
      width > 0
        ? gatherPast(
            this.pool,
            this.layout,
            rows.map((r) => ({ blockTable: r.blockTable, len: r.pastLen })),
            width,
            this.prefillPastFor(rows.length * this.layout.numKvHeads * width * this.layout.headDim),
          )
        : undefined;
    const res = await this.runner.forwardNew({ rows, pastWidth: width, past });
    this.scatter(res.newKv, res.seqLen, rows);
    const gatheredTokens = width > 0 ? rows.reduce((a, r) => a + r.pastLen, 0) : 0;
    return { logits: res.logits, runSeconds: res.runSeconds, execSeconds: (performance.now() - t0) / 1000, gatheredTokens };
  }

  /** Kept buffers of at least `floats` per layer and K or V, grown if need be; undefined when that is over the limit. */
  private prefillPastFor(floats: number): LayerKv[] | undefined {
    const perFloat = this.layout.numLayers * 2 * Float32Array.BYTES_PER_ELEMENT;
    const limit = Math.floor(PREFILL_PAST_KEEP_BYTES / perFloat);
    if (floats > limit) return undefined;
    if ((this.prefillPast[0]?.key.length ?? 0) < floats) {
      const size = Math.min(limit, Math.ceil(floats * PREFILL_PAST_HEADROOM));
      this.prefillPast = []; // the old ones go before the new ones are made
      for (let l = 0; l < this.layout.numLayers; l++) this.prefillPast.push({ key: new Float32Array(size), value: new Float32Array(size) });
    }
    return this.prefillPast;
  }

  private async decode(rows: readonly ExecRow[], argmaxOnly = false): Promise<ExecResult> {
    const t0 = performance.now();
    const seqLen = Math.max(...rows.map((r) => r.tokenIds.length));
    const plan = this.resident.prepare(rows, seqLen);
    const bySlot: ExecRow[] = new Array<ExecRow>(rows.length);
    rows.forEach((r, i) => (bySlot[plan.slotOf[i]!] = r));
    const res = await this.runner.forwardNew({ rows: bySlot, pastWidth: plan.width, past: plan.past, pastMask: plan.pastMask, argmaxOnly });
    this.resident.commit(
      seqLen,
      bySlot.map((r) => r.tokenIds.length),
      res.newKv,
    );
    this.scatter(res.newKv, seqLen, bySlot);
    return {
      logits: this.inRowOrder(res.logits, this.runner.spec.vocabSize, rows, plan.slotOf, bySlot),
      ...(res.argmax ? { argmax: this.inRowOrder(res.argmax, 1, rows, plan.slotOf, bySlot) } : {}),
      runSeconds: res.runSeconds,
      execSeconds: (performance.now() - t0) / 1000,
      gatheredTokens: plan.gatheredTokens,
    };
  }

  /** See ExecBatch.greedyRounds and catchUp. */
  private async greedyRounds(rows: readonly ExecRow[], rounds: readonly number[], catchUp?: readonly boolean[]): Promise<ExecResult> {
    const t0 = performance.now();
    const V = this.runner.spec.vocabSize;
    const tokens: number[][] = rows.map(() => []);
    let runSeconds = 0;
    let gatheredTokens = 0;
    let catchUpSeconds = 0;
    const first = rows.flatMap((row, i) => (catchUp?.[i] && rounds[i]! > 0 ? [{ row, i }] : []));
    if (first.length > 0) {
      const res = await this.prefill(first.map(({ row }) => row));
      runSeconds += res.runSeconds;
      gatheredTokens += res.gatheredTokens;
      catchUpSeconds = res.execSeconds;
      first.forEach(({ i }, j) => tokens[i]!.push(argmax(res.logits, j * V, V)));
    }
    let live = rows.map((row, i) => ({ row, i })).filter(({ i }) => tokens[i]!.length < rounds[i]!);
    let round = 0;
    for (; live.length > 0; round++) {
      const batch = live.map(({ row, i }) => {
        const n = tokens[i]!.length;
        return n === 0
          ? row
          : {
              seqId: row.seqId,
              tokenIds: [tokens[i]![n - 1]!],
              pastLen: row.pastLen + row.tokenIds.length + n - 1,
              blockTable: row.blockTable,
            };
      });
      const res = await this.decode(batch);
      runSeconds += res.runSeconds;
      gatheredTokens += res.gatheredTokens;
      live.forEach(({ i }, j) => tokens[i]!.push(argmax(res.logits, j * V, V)));
      live = live.filter(({ i }) => tokens[i]!.length < rounds[i]!);
    }
    const execSeconds = (performance.now() - t0) / 1000;
    return { logits: new Float32Array(0), runSeconds, execSeconds, gatheredTokens, tokens, catchUpSeconds, rounds: round };
  }

  /** Writes each row's new tokens' KV (the right end of `newKv`'s `seqLen` columns) into its blocks. */
  private scatter(newKv: readonly LayerKv[], seqLen: number, rows: readonly ExecRow[]): void {
    scatterNew(
      this.pool,
      this.layout,
      newKv,
      seqLen,
      rows.map((r) => ({ blockTable: r.blockTable, pastLen: r.pastLen, count: r.tokenIds.length })),
    );
  }

  /** Logits (`V` values a row) or their argmax (1) come back in slot order; the caller wants its own row order. */
  private inRowOrder<T extends Float32Array | Int32Array>(
    data: T,
    V: number,
    rows: readonly ExecRow[],
    slotOf: readonly number[],
    bySlot: readonly ExecRow[],
  ): T {
    if (data.length === 0 || slotOf.every((s, i) => s === i)) return data;
    const count = (r: ExecRow): number => r.numLogits ?? 1;
    const offset: number[] = [];
    bySlot.reduce((at, r, slot) => ((offset[slot] = at), at + count(r)), 0);
    const out = new (data.constructor as new (n: number) => T)(data.length);
    let at = 0;
    rows.forEach((r, i) => {
      const from = offset[slotOf[i]!]! * V;
      out.set(data.subarray(from, from + count(r) * V), at * V);
      at += count(r);
    });
    return out;
  }
}

export interface ExecutorInit {
  readonly spec: ModelSpec;
  readonly runner: RunnerOptions;
  readonly layout: KvLayout;
  readonly pool: Float32Array;
  /** A speculative draft model run on the same thread (batches with model 'draft' or draftFirst), with its own KV pool. */
  readonly draft?: Omit<ExecutorInit, 'draft'>;
}

/** What a model thread runs: the target's BatchExecutor and, when it hosts one, the draft's. */
export class ThreadModels {
  private draftFailure: string | undefined;

  private constructor(
    private readonly target: BatchExecutor,
    private draft: { readonly exec: BatchExecutor; readonly runner: ModelRunner } | undefined,
  ) {}

  static async create(init: ExecutorInit): Promise<ThreadModels> {
    const runner = await ModelRunner.create(init.spec, init.runner);
    let draft: { exec: BatchExecutor; runner: ModelRunner } | undefined;
    if (init.draft) {
      const d = init.draft;
      const dr = await ModelRunner.create(d.spec, d.runner);
      draft = { exec: new BatchExecutor(dr, d.layout, d.pool), runner: dr };
    }
    return new ThreadModels(new BatchExecutor(runner, init.layout, init.pool), draft);
  }

  stage(s: StagedBlocks): void {
    this.target.stage(s);
  }

  async run(batch: ExecBatch): Promise<ExecResult> {
    if (batch.model === 'draft') return (await this.draftExec()).run(batch);
    if (!batch.draftFirst) return this.target.run(batch);
    const t0 = performance.now();
    const { rows: draftRows, rounds, into } = batch.draftFirst;
    let proposed: ExecResult;
    try {
      proposed = await (await this.draftExec()).run({
        kind: 'decode',
        rows: draftRows,
        greedyRounds: rounds,
        catchUp: batch.draftFirst.catchUp,
      });
    } catch (err) {
      const res = await this.target.run({ kind: batch.kind, rows: batch.rows });
      return { ...res, execSeconds: (performance.now() - t0) / 1000, draftError: (err as Error).message };
    }
    const rows = [...batch.rows];
    into.forEach((at, i) => {
      const r = rows[at]!;
      const tokens = proposed.tokens![i]!;
      rows[at] = { ...r, tokenIds: [...r.tokenIds, ...tokens], numLogits: (r.numLogits ?? 1) + tokens.length };
    });
    const res = await this.target.run({ kind: batch.kind, rows });
    return {
      ...res,
      execSeconds: (performance.now() - t0) / 1000,
      tokens: proposed.tokens,
      draftSeconds: proposed.execSeconds,
      draftCatchUpSeconds: proposed.catchUpSeconds,
      draftRounds: proposed.rounds,
    };
  }

  /** Releases the draft's session: its batches fail from then on (the engine then decodes without it). */
  async releaseDraft(): Promise<void> {
    const d = this.draft;
    this.draft = undefined;
    this.draftFailure ??= 'draft model closed';
    await d?.runner.release();
  }

  private async draftExec(): Promise<BatchExecutor> {
    if (!this.draft) throw new Error(this.draftFailure ?? 'this model thread hosts no draft model');
    return this.draft.exec;
  }
}

type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly result: ExecResult }
  | { readonly id: number; readonly ok: false; readonly error: string };

/**
 * The model runs on its own thread (onnxruntime-node's run is synchronous), so the engine thread keeps
 * serving I/O, admitting requests and sampling while a forward executes. KV blocks live in shared memory.
 */
export class ThreadExecutor {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: ExecResult) => void; reject: (e: Error) => void }>();
  private failed: Error | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (msg: WorkerReply) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(msg.error));
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new Error(`model thread exited with code ${code}`)));
  }

  static async start(init: ExecutorInit): Promise<ThreadExecutor> {
    const worker = new Worker(new URL('./executor-worker-boot.mjs', import.meta.url), { workerData: init, execArgv: [] });
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ready?: boolean; error?: string }): void => {
        worker.off('error', reject);
        if (m.ready) resolve();
        else reject(new Error(m.error ?? 'model thread failed to start'));
      };
      worker.once('message', onMsg);
      worker.once('error', reject);
    });
    return new ThreadExecutor(worker);
  }

  run(batch: ExecBatch): Promise<ExecResult> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, batch });
    });
  }

  /** Stages a streamed prompt's blocks on the model thread, in order with the batches (the buffers are moved there). */
  stage(s: StagedBlocks): void {
    if (this.failed) return;
    this.worker.postMessage(
      { id: 0, stage: s },
      s.blocks.map((b) => b.buffer as ArrayBuffer),
    );
  }

  /** Releases the draft model this thread hosts (ExecutorInit.draft): its batches fail from then on. */
  async releaseDraft(): Promise<void> {
    if (this.failed) return;
    const id = this.nextId++;
    await new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve: () => resolve(), reject });
      this.worker.postMessage({ id, releaseDraft: true });
    });
  }

  async close(): Promise<void> {
    this.failed ??= new Error('executor closed');
    await this.worker.terminate();
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** Index (from `from`) of the largest of logits[from, from + n); ties to the lowest. */
function argmax(logits: Float32Array, from: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (logits[from + j]! > logits[from + best]!) best = j;
  return best;
}
