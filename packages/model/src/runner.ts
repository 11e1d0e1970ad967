import * as ort from 'onnxruntime-node';
import { ModelLoadError, type ModelSpec } from './config';

export interface RunnerOptions {
  /** onnxruntime execution provider: 'cpu' here; 'cuda', 'cann', ... where the runtime build has them. */
  readonly executionProvider?: string;
  /** Threads inside one op; 0 lets onnxruntime choose. */
  readonly intraOpThreads?: number;
  readonly interOpThreads?: number;
  /**
   * onnxruntime's threads spin-wait for work between runs (default true): lower latency for the next
   * step, but CPU taken from anything sharing the cores, such as other engines on the same host.
   */
  readonly allowSpinning?: boolean;
}

/** K and V of one layer, shaped [batch, kvHeads, len, headDim]. */
export interface LayerKv {
  readonly key: Float32Array;
  readonly value: Float32Array;
}

/** One row of a batch: `tokenIds` are new tokens that follow `pastLen` tokens already in the past KV. */
export interface ForwardRow {
  readonly tokenIds: readonly number[];
  readonly pastLen: number;
}

/**
 * A rectangular batch. Past KV is right-aligned in a window of `pastWidth` columns (row b's real past
 * occupies the last rows[b].pastLen columns); new tokens are left-padded to the longest row.
 */
export interface ForwardBatch {
  readonly rows: readonly ForwardRow[];
  readonly pastWidth: number;
  /** Per layer, [batch, kvHeads, pastWidth, headDim]; omitted when pastWidth is 0. */
  readonly past?: readonly LayerKv[];
}

export interface ForwardResult {
  /** [batch, vocab]: logits of each row's last token. */
  readonly logits: Float32Array;
  /** Per layer, [batch, kvHeads, pastWidth + seqLen, headDim]. */
  readonly present: readonly LayerKv[];
  readonly seqLen: number;
  /** Seconds inside session.run. */
  readonly runSeconds: number;
}

/** One onnxruntime session over a decoder-only graph with the Optimum / transformers.js I/O contract. */
export class ModelRunner {
  private constructor(
    readonly spec: ModelSpec,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(spec: ModelSpec, opts: RunnerOptions = {}): Promise<ModelRunner> {
    const provider = opts.executionProvider ?? 'cpu';
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(spec.onnxPath, {
        executionProviders: [provider],
        intraOpNumThreads: opts.intraOpThreads ?? 0,
        interOpNumThreads: opts.interOpThreads ?? 0,
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        ...(opts.allowSpinning === false
          ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } }
          : {}),
      });
    } catch (err) {
      throw new ModelLoadError(`cannot load ${spec.onnxPath}: ${firstLine((err as Error).message)}`);
    }
    const need = ['input_ids', 'attention_mask', 'past_key_values.0.key', 'past_key_values.0.value'];
    const missing = need.filter((n) => !session.inputNames.includes(n));
    if (missing.length > 0 || !session.outputNames.includes('logits')) {
      throw new ModelLoadError(
        `${spec.onnxPath} does not follow the Optimum decoder I/O contract (missing ${[...missing, 'logits'].join(', ')})`,
      );
    }
    return new ModelRunner(spec, session);
  }

  private get usesPositionIds(): boolean {
    return this.session.inputNames.includes('position_ids');
  }

  /** Runs one forward pass. Rows' padding follows ForwardBatch; outputs are copied out of onnxruntime. */
  async forward(batch: ForwardBatch): Promise<ForwardResult> {
    const { numLayers, numKvHeads, headDim, vocabSize } = this.spec;
    const B = batch.rows.length;
    const P = batch.pastWidth;
    const S = Math.max(...batch.rows.map((r) => r.tokenIds.length));
    const T = P + S;
    const inputIds = new BigInt64Array(B * S);
    const mask = new BigInt64Array(B * T);
    const positions = new BigInt64Array(B * S);
    for (let b = 0; b < B; b++) {
      const row = batch.rows[b]!;
      const s = row.tokenIds.length;
      if (row.pastLen > P) throw new Error(`row ${b}: pastLen ${row.pastLen} exceeds pastWidth ${P}`);
      for (let j = P - row.pastLen; j < P; j++) mask[b * T + j] = 1n;
      for (let i = 0; i < s; i++) {
        const col = S - s + i;
        inputIds[b * S + col] = BigInt(row.tokenIds[i]!);
        positions[b * S + col] = BigInt(row.pastLen + i);
        mask[b * T + P + col] = 1n;
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', inputIds, [B, S]),
      attention_mask: new ort.Tensor('int64', mask, [B, T]),
    };
    if (this.usesPositionIds) feeds['position_ids'] = new ort.Tensor('int64', positions, [B, S]);
    const pastDims = [B, numKvHeads, P, headDim];
    const empty = new Float32Array(0);
    for (let l = 0; l < numLayers; l++) {
      const kv = batch.past?.[l];
      feeds[`past_key_values.${l}.key`] = new ort.Tensor('float32', P > 0 ? kv!.key : empty, pastDims);
      feeds[`past_key_values.${l}.value`] = new ort.Tensor('float32', P > 0 ? kv!.value : empty, pastDims);
    }
    const t0 = performance.now();
    const out = await this.session.run(feeds);
    const runSeconds = (performance.now() - t0) / 1000;

    const logitsT = out['logits']!;
    const outLen = logitsT.dims[1]!;
    const raw = logitsT.data as Float32Array;
    // Graphs that emit logits for every position are sliced to the last one; ours already emits one.
    let logits: Float32Array;
    if (outLen === 1) logits = raw;
    else {
      logits = new Float32Array(B * vocabSize);
      for (let b = 0; b < B; b++) {
        const from = (b * outLen + outLen - 1) * vocabSize;
        logits.set(raw.subarray(from, from + vocabSize), b * vocabSize);
      }
    }
    const present: LayerKv[] = [];
    for (let l = 0; l < numLayers; l++) {
      present.push({
        key: out[`present.${l}.key`]!.data as Float32Array,
        value: out[`present.${l}.value`]!.data as Float32Array,
      });
    }
    return { logits, present, seqLen: S, runSeconds };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}
