import { availableParallelism } from 'node:os';
import type * as Ort from 'onnxruntime-node';

/**
 * onnxruntime-node, loaded by the first ModelRunner.create: a process that never runs a model (the gateway,
 * a kv-store node, the CLI's other commands) never loads its native binding.
 */
let ort: typeof Ort;
import { ModelLoadError, type ModelSpec } from './config';
import { argmax } from './sampler';

export interface RunnerOptions {
  /** onnxruntime execution provider: 'cpu' here; 'cuda', 'cann', ... where the runtime build has them. */
  readonly executionProvider?: string;
  /**
   * Threads inside one op; 0 (default): every core this process may use (os.availableParallelism). Not
   * onnxruntime's own choice: it took 1 on a 2-core VM here, leaving a core idle (prefill 1.6× and decode
   * 1.3–1.6× slower at the preset).
   */
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
  /**
   * Logits of this many trailing new tokens are returned (K+1 to verify K draft tokens); default 1,
   * at most tokenIds.length.
   */
  readonly numLogits?: number;
}

/**
 * A rectangular batch. Past KV has `pastWidth` columns; by default row b's real past is right-aligned
 * (its last rows[b].pastLen columns), or `pastMask` says which columns hold it. New tokens are
 * left-padded to the longest row.
 */
export interface ForwardBatch {
  readonly rows: readonly ForwardRow[];
  readonly pastWidth: number;
  /** Per layer, [batch, kvHeads, pastWidth, headDim]; omitted when pastWidth is 0. */
  readonly past?: readonly LayerKv[];
  /**
   * [batch, pastWidth], 1 where a column holds one of the row's past tokens. Each row's set columns are
   * its positions 0..pastLen-1 in order; holes (rolled-back or padding columns) are 0. Keys carry their
   * rotary position, so a hole changes nothing but the column count.
   */
  readonly pastMask?: Uint8Array;
  /**
   * Only each logits row's argmax is wanted (every row samples greedily): the result has `argmax` and, where
   * the graph outputs LOGITS_ARGMAX, empty logits.
   */
  readonly argmaxOnly?: boolean;
}

interface ForwardOutput {
  /** Logits of each row's trailing numLogits tokens, rows in order, then positions in order: [Σ counts, vocab]. */
  readonly logits: Float32Array;
  /** With argmaxOnly: each of those rows' argmax (the first of equal maxima), in the same order. */
  readonly argmax?: Int32Array;
  readonly seqLen: number;
  /** Seconds inside session.run. */
  readonly runSeconds: number;
}

export interface ForwardResult extends ForwardOutput {
  /** Per layer, [batch, kvHeads, pastWidth + seqLen, headDim]. */
  readonly present: readonly LayerKv[];
}

export interface NewKvResult extends ForwardOutput {
  /** Per layer, [batch, kvHeads, seqLen, headDim]: the new tokens' KV, present's right end. */
  readonly newKv: readonly LayerKv[];
}

/**
 * Graph outputs `${NEW_KV_PREFIX}.{layer}.key|value` ([batch, kvHeads, seqLen, headDim]), beyond the
 * Optimum contract: the new tokens' KV alone (pdserve's tiny-model builder writes them). An engine that
 * keeps its own cache fetches these instead of present, which onnxruntime-node would copy out whole
 * (every column of the past) into fresh memory every step.
 */
export const NEW_KV_PREFIX = 'new_key_values';

/**
 * Graph output `logits_argmax` ([batch, num_logits], int64), beyond the Optimum contract: each logits row's
 * argmax, the first of equal maxima (pdserve's builder writes it). A forward whose rows all sample greedily
 * fetches it instead of the logits, which onnxruntime-node would copy out (vocab floats a row) every step.
 */
export const LOGITS_ARGMAX = 'logits_argmax';

/** One onnxruntime session over a decoder-only graph with the Optimum / transformers.js I/O contract. */
export class ModelRunner {
  private constructor(
    readonly spec: ModelSpec,
    private readonly session: Ort.InferenceSession,
  ) {}

  static async create(spec: ModelSpec, opts: RunnerOptions = {}): Promise<ModelRunner> {
    ort ??= await import('onnxruntime-node');
    const provider = opts.executionProvider ?? 'cpu';
    let session: Ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(spec.onnxPath, {
        executionProviders: [provider],
        intraOpNumThreads: opts.intraOpThreads || availableParallelism(),
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

  /** Graphs with this input compute the lm_head for the trailing positions asked for only. */
  private get keepsLogits(): boolean {
    return this.session.inputNames.includes('num_logits_to_keep');
  }

  private get outputsNewKv(): boolean {
    return this.session.outputNames.includes(`${NEW_KV_PREFIX}.0.key`);
  }

  private get outputsArgmax(): boolean {
    return this.session.outputNames.includes(LOGITS_ARGMAX);
  }

  /** Runs one forward pass. Rows' padding follows ForwardBatch; outputs are copied out of onnxruntime. */
  async forward(batch: ForwardBatch): Promise<ForwardResult> {
    const { out, ...rest } = await this.run(batch, 'present');
    return { ...rest, present: this.layers(out, 'present') };
  }

  /**
   * Runs one forward pass for an engine that keeps its own cache: only the new tokens' KV comes back
   * (fetched alone where the graph outputs it, else cut from present's right end).
   */
  async forwardNew(batch: ForwardBatch): Promise<NewKvResult> {
    if (this.outputsNewKv) {
      const { out, ...rest } = await this.run(batch, NEW_KV_PREFIX);
      return { ...rest, newKv: this.layers(out, NEW_KV_PREFIX) };
    }
    const { out, ...rest } = await this.run(batch, 'present');
    const { numKvHeads: H, headDim: D } = this.spec;
    const B = batch.rows.length;
    const S = rest.seqLen;
    const T = batch.pastWidth + S;
    const cut = (full: Float32Array): Float32Array => {
      const part = new Float32Array(B * H * S * D);
      for (let bh = 0; bh < B * H; bh++) part.set(full.subarray((bh * T + T - S) * D, (bh + 1) * T * D), bh * S * D);
      return part;
    };
    return { ...rest, newKv: this.layers(out, 'present').map((kv) => ({ key: cut(kv.key), value: cut(kv.value) })) };
  }

  private layers(out: Record<string, Ort.Tensor>, prefix: string): LayerKv[] {
    return Array.from({ length: this.spec.numLayers }, (_, l) => ({
      key: out[`${prefix}.${l}.key`]!.data as Float32Array,
      value: out[`${prefix}.${l}.value`]!.data as Float32Array,
    }));
  }

  /** One session.run fetching the logits and the per-layer KV outputs named `${kvPrefix}.{layer}.key|value`. */
  private async run(batch: ForwardBatch, kvPrefix: string): Promise<ForwardOutput & { readonly out: Record<string, Ort.Tensor> }> {
    const { numLayers, numKvHeads, headDim, vocabSize } = this.spec;
    const B = batch.rows.length;
    const P = batch.pastWidth;
    const S = Math.max(...batch.rows.map((r) => r.tokenIds.length));
    const T = P + S;
    const inputIds = new BigInt64Array(B * S);
    const mask = new BigInt64Array(B * T);
    const positions = new BigInt64Array(B * S);
    const counts = batch.rows.map((r) => r.numLogits ?? 1);
    const keep = Math.max(...counts);
    const pastMask = batch.pastMask;
    if (pastMask && pastMask.length !== B * P) throw new Error(`pastMask holds ${pastMask.length} columns, expected ${B} × ${P}`);
    for (let b = 0; b < B; b++) {
      const row = batch.rows[b]!;
      const s = row.tokenIds.length;
      if (s === 0) throw new Error(`row ${b} has no new tokens`);
      if (counts[b]! < 1 || counts[b]! > s) throw new Error(`row ${b}: numLogits ${counts[b]} outside [1, ${s}]`);
      if (row.pastLen > P) throw new Error(`row ${b}: pastLen ${row.pastLen} exceeds pastWidth ${P}`);
      if (pastMask) {
        let set = 0;
        for (let j = 0; j < P; j++) {
          if (pastMask[b * P + j] === 0) continue;
          mask[b * T + j] = 1n;
          set++;
        }
        if (set !== row.pastLen) throw new Error(`row ${b}: pastMask has ${set} columns set, pastLen is ${row.pastLen}`);
      } else for (let j = P - row.pastLen; j < P; j++) mask[b * T + j] = 1n;
      for (let i = 0; i < s; i++) {
        const col = S - s + i;
        inputIds[b * S + col] = BigInt(row.tokenIds[i]!);
        positions[b * S + col] = BigInt(row.pastLen + i);
        mask[b * T + P + col] = 1n;
      }
    }
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: new ort.Tensor('int64', inputIds, [B, S]),
      attention_mask: new ort.Tensor('int64', mask, [B, T]),
    };
    if (this.usesPositionIds) feeds['position_ids'] = new ort.Tensor('int64', positions, [B, S]);
    if (this.keepsLogits) feeds['num_logits_to_keep'] = new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
    const pastDims = [B, numKvHeads, P, headDim];
    const empty = new Float32Array(0);
    for (let l = 0; l < numLayers; l++) {
      const kv = batch.past?.[l];
      feeds[`past_key_values.${l}.key`] = new ort.Tensor('float32', P > 0 ? kv!.key : empty, pastDims);
      feeds[`past_key_values.${l}.value`] = new ort.Tensor('float32', P > 0 ? kv!.value : empty, pastDims);
    }
    const argmaxOnly = batch.argmaxOnly === true && this.outputsArgmax;
    const fetches = [argmaxOnly ? LOGITS_ARGMAX : 'logits'];
    for (let l = 0; l < numLayers; l++) fetches.push(`${kvPrefix}.${l}.key`, `${kvPrefix}.${l}.value`);
    const t0 = performance.now();
    const out = await this.session.run(feeds, fetches);
    const runSeconds = (performance.now() - t0) / 1000;

    if (argmaxOnly) {
      const best = out[LOGITS_ARGMAX]!;
      const width = best.dims[1]!;
      const ids = best.data as BigInt64Array;
      const argmax = new Int32Array(counts.reduce((a, c) => a + c, 0));
      let at = 0;
      for (let b = 0; b < B; b++) for (let j = width - counts[b]!; j < width; j++) argmax[at++] = Number(ids[b * width + j]!);
      return { out, logits: new Float32Array(0), argmax, seqLen: S, runSeconds };
    }
    const logitsT = out['logits']!;
    const outLen = logitsT.dims[1]!;
    const raw = logitsT.data as Float32Array;
    // Each row's trailing positions, out of the `outLen` trailing positions the graph returned
    // (`keep` for graphs that take num_logits_to_keep, every position for others).
    // Every row asking for all of them (one logit each in decode, K + 1 each in a batch-1 verify): the
    // output is already in that order, and a copy of it would cost a fresh [Σ counts, vocab] buffer.
    let logits: Float32Array;
    if (raw.length === B * outLen * vocabSize && counts.every((c) => c === outLen)) logits = raw;
    else {
      logits = new Float32Array(counts.reduce((a, c) => a + c, 0) * vocabSize);
      let at = 0;
      for (let b = 0; b < B; b++) {
        const from = (b * outLen + outLen - counts[b]!) * vocabSize;
        logits.set(raw.subarray(from, from + counts[b]! * vocabSize), at);
        at += counts[b]! * vocabSize;
      }
    }
    // A graph without the argmax output: the same answer from the logits.
    const argmax = batch.argmaxOnly === true ? rowArgmax(logits, vocabSize) : undefined;
    return { out, logits, ...(argmax ? { argmax } : {}), seqLen: S, runSeconds };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Each `n`-wide row's argmax, as the sampler takes it (the first of equal maxima, as onnxruntime's ArgMax). */
function rowArgmax(logits: Float32Array, n: number): Int32Array {
  return Int32Array.from({ length: logits.length / n }, (_, r) => argmax(logits.subarray(r * n, (r + 1) * n), n));
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}
