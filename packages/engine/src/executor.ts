import { Worker } from 'node:worker_threads';
import type { KvLayout } from '@pdserve/kv-cache';
import { ModelRunner, type LayerKv, type ModelSpec, type RunnerOptions } from '@pdserve/model';
import { gatherPast, scatterNew } from './kv-io';

/** One sequence's share of a forward: its new tokens follow `pastLen` tokens already in its blocks. */
export interface ExecRow {
  readonly seqId: number;
  readonly tokenIds: readonly number[];
  readonly pastLen: number;
  /** Blocks covering positions [0, pastLen + tokenIds.length). */
  readonly blockTable: readonly number[];
}

export interface ExecBatch {
  readonly kind: 'prefill' | 'decode';
  readonly rows: readonly ExecRow[];
}

export interface ExecResult {
  /** rows × vocab: logits of each row's last token. */
  readonly logits: Float32Array;
  /** Seconds inside session.run, and for the whole batch including gather/scatter. */
  readonly runSeconds: number;
  readonly execSeconds: number;
  /** A decode batch whose rows equal the previous one's fed that forward's present straight back. */
  readonly reusedPast: boolean;
}

/**
 * Runs batches against the model and the KV pool: gathers past KV from blocks, runs, writes the new
 * tokens' KV back into blocks. A decode batch with the same sequences as the previous decode batch,
 * each one token further, reuses the previous `present` as `past` (no gather), as a plain loop would.
 */
export class BatchExecutor {
  private lastDecode: { seqIds: number[]; pastLens: number[]; width: number; present: readonly LayerKv[] } | undefined;

  constructor(
    private readonly runner: ModelRunner,
    private readonly layout: KvLayout,
    private readonly pool: Float32Array,
  ) {}

  async run(batch: ExecBatch): Promise<ExecResult> {
    const t0 = performance.now();
    const rows = batch.rows;
    const reuse = batch.kind === 'decode' && this.canReuse(rows);
    let width: number;
    let past: readonly LayerKv[] | undefined;
    if (reuse) {
      width = this.lastDecode!.width;
      past = this.lastDecode!.present;
    } else {
      width = Math.max(...rows.map((r) => r.pastLen));
      past = width > 0 ? gatherPast(this.pool, this.layout, rows.map((r) => ({ blockTable: r.blockTable, len: r.pastLen })), width) : undefined;
    }
    const res = await this.runner.forward({ rows, pastWidth: width, past });
    const total = width + res.seqLen;
    scatterNew(
      this.pool,
      this.layout,
      res.present,
      total,
      rows.map((r) => ({ blockTable: r.blockTable, pastLen: r.pastLen, count: r.tokenIds.length })),
    );
    this.lastDecode =
      batch.kind === 'decode'
        ? { seqIds: rows.map((r) => r.seqId), pastLens: rows.map((r) => r.pastLen), width: total, present: res.present }
        : this.lastDecode;
    return { logits: res.logits, runSeconds: res.runSeconds, execSeconds: (performance.now() - t0) / 1000, reusedPast: reuse };
  }

  /** Token ids only ever grow, so equal ids one step further means the cached present is exact. */
  private canReuse(rows: readonly ExecRow[]): boolean {
    const last = this.lastDecode;
    if (!last || last.seqIds.length !== rows.length) return false;
    for (let i = 0; i < rows.length; i++) {
      if (rows[i]!.seqId !== last.seqIds[i] || rows[i]!.pastLen !== last.pastLens[i]! + 1) return false;
    }
    return true;
  }
}

export interface ExecutorInit {
  readonly spec: ModelSpec;
  readonly runner: RunnerOptions;
  readonly layout: KvLayout;
  readonly pool: Float32Array;
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
