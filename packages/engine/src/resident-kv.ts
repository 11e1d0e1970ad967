// The decode batch's KV, kept dense between steps so that a step costs the model's own work and not a
// copy of every row's whole past out of the paged blocks. A model's `past` input is one [batch, kvHeads,
// width, headDim] tensor per layer and its `present` output is past ++ new; here `present` is written
// into the second of two preallocated arenas and becomes the next step's `past` as it is. Only what
// changed moves: a sequence that joins is copied in from its blocks (one row), one that leaves is
// replaced by the last row (one row), a rolled-back one only has columns masked out. A full copy from
// the blocks happens when a joining row is longer than the batch is wide, when masked-out columns waste
// more than an eighth of the width, or when an arena has to grow.
//
// A prompt whose KV streams in from a prefill worker is staged: each part's blocks are copied, as they
// land, into a third arena laid out as that prompt's row, so that when it joins an empty batch the arena
// becomes the resident one and only the blocks that came after the first token are copied from the pool.
// One prompt is staged at a time (another prompt's first part replaces it); anything else joins as above.
import type { KvLayout } from '@pdserve/kv-cache';
import type { LayerKv } from '@pdserve/model';
import { copyBlock, gatherRow, type RowBlocks } from './kv-io';

/** What the resident KV needs to know of a row of the next decode batch. */
export interface ResidentRow extends RowBlocks {
  readonly seqId: number;
  /** Tokens of this sequence already computed (may be below what is resident: a rollback). */
  readonly pastLen: number;
  /** The staged prompt (ResidentKv.stage) this row's leading blocks hold, when it joins. */
  readonly stagedKey?: string;
}

/** The next forward's past, rows in slot order. */
export interface ResidentBatch {
  /** slotOf[i] is the batch row of the caller's row i. */
  readonly slotOf: readonly number[];
  readonly width: number;
  readonly past: readonly LayerKv[];
  /** [rows, width], 1 where a column holds the row's past. */
  readonly pastMask: Uint8Array;
  /** Tokens copied in from blocks to arrange this batch (0 in a steady decode). */
  readonly gatheredTokens: number;
}

/** Wasted columns (holes, or the padding of a row that left) tolerated before compacting: of the width, and at least. */
const WASTE_FRACTION = 1 / 8;
const WASTE_MIN_COLUMNS = 32;
/**
 * Arenas are allocated larger than needed, so that a growing batch or width reallocates (and copies
 * every row in again) rarely: this fraction more rows plus one, and more columns plus a few.
 */
const ARENA_HEADROOM = 1 / 8;
const ARENA_SPARE_COLUMNS = 64;

interface Arena {
  key: Float32Array[];
  value: Float32Array[];
  floats: number;
}

export class ResidentKv {
  private readonly arenas: [Arena, Arena];
  /** Index of the arena holding the resident past. */
  private cur = 0;
  private seqIds: number[] = [];
  private pastLens: number[] = [];
  private width = 0;
  private mask = new Uint8Array(0);
  /** The staged prompt: its row's first `tokens` columns (of `width`, its length) are in `arena`. */
  private staged: { readonly key: string; readonly width: number; tokens: number } | undefined;
  private spare: Arena = { key: [], value: [], floats: 0 };

  constructor(
    private readonly layout: KvLayout,
    private readonly pool: Float32Array,
  ) {
    const empty = (): Arena => ({ key: [], value: [], floats: 0 });
    this.arenas = [empty(), empty()];
  }

  /** Floats of one batch row at `width` columns, per layer and K or V. */
  private rowFloats(width: number): number {
    return this.layout.numKvHeads * width * this.layout.headDim;
  }

  /** The sequence's KV is about to change outside decode (recomputed, preempted): stop holding it. */
  forget(seqId: number): void {
    const slot = this.seqIds.indexOf(seqId);
    if (slot >= 0) this.drop(slot);
  }

  /**
   * Copies full blocks `fromBlock`, `fromBlock` + 1, ... (each in block layout) of the prompt `key`, of
   * `promptLen` tokens, into its staged row. A part of another prompt than the one staged starts staging
   * that one if it is its first; a part that does not follow the staged ones is ignored.
   */
  stage(key: string, promptLen: number, fromBlock: number, blocks: readonly Float32Array[]): void {
    const bs = this.layout.blockSize;
    if (this.staged?.key !== key) {
      this.staged = undefined;
      if (fromBlock !== 0) return;
      this.ensureArena(this.spare, 1, promptLen + 1);
      this.staged = { key, width: promptLen, tokens: 0 };
    }
    const s = this.staged;
    if (fromBlock * bs !== s.tokens) return;
    const dst = this.viewsOf(this.spare, 1, s.width);
    for (const b of blocks) {
      if (s.tokens + bs > s.width) break;
      copyBlock(b, 0, this.layout, bs, dst, 0, s.width, s.tokens);
      s.tokens += bs;
    }
  }

  /** Tokens of the staged prompt copied in so far (0: none staged). */
  get stagedTokens(): number {
    return this.staged?.tokens ?? 0;
  }

  /** Arranges the resident rows to be exactly `rows` (in slot order of its choosing) for a forward of `seqLen` new columns. */
  prepare(rows: readonly ResidentRow[], seqLen: number): ResidentBatch {
    const index = new Map<number, number>();
    rows.forEach((r, i) => index.set(r.seqId, i));
    for (let slot = this.seqIds.length - 1; slot >= 0; slot--) {
      const i = index.get(this.seqIds[slot]!);
      const want = i === undefined ? undefined : rows[i]!.pastLen;
      if (want === undefined || want > this.pastLens[slot]!) this.drop(slot);
      else if (want < this.pastLens[slot]!) this.rollBack(slot, want);
    }
    const staged = this.staged;
    if (staged !== undefined && rows.some((r) => r.stagedKey === staged.key)) {
      this.staged = undefined; // used now, or copied in from the blocks as any other row
      const r = rows[0]!;
      if (this.seqIds.length === 0 && rows.length === 1 && r.pastLen === staged.width) return this.adoptStaged(r, staged.tokens);
    }
    const resident = new Set(this.seqIds);
    const joining = rows.filter((r) => !resident.has(r.seqId));
    const maxPast = rows.reduce((m, r) => Math.max(m, r.pastLen), 0);
    const wasted = this.width - maxPast;
    const fits = joining.every((r) => r.pastLen <= this.width);
    const need = rows.length * this.rowFloats(this.width);
    let gathered = 0;
    if (!fits || wasted > Math.max(WASTE_MIN_COLUMNS, this.width * WASTE_FRACTION) || need > this.arenas[this.cur].floats) {
      gathered = this.rebuild(rows, maxPast, seqLen);
    } else {
      for (const r of joining) {
        const slot = this.seqIds.length;
        gatherRow(
          this.pool,
          this.layout,
          { blockTable: r.blockTable, len: r.pastLen },
          this.views(this.cur, slot + 1, this.width),
          slot,
          this.width,
        );
        this.seqIds.push(r.seqId);
        this.pastLens.push(r.pastLen);
        const mask = new Uint8Array((slot + 1) * this.width);
        mask.set(this.mask.subarray(0, slot * this.width));
        mask.fill(1, (slot + 1) * this.width - r.pastLen);
        this.mask = mask;
        gathered += r.pastLen;
      }
    }
    const slotOf = rows.map((r) => this.seqIds.indexOf(r.seqId));
    const n = this.seqIds.length;
    return {
      slotOf,
      width: this.width,
      past: this.views(this.cur, n, this.width),
      pastMask: this.mask.subarray(0, n * this.width),
      gatheredTokens: gathered,
    };
  }

  /** Where the forward writes `present`: the other arena, grown if needed. */
  presentInto(seqLen: number): LayerKv[] {
    const other = 1 - this.cur;
    const n = this.seqIds.length;
    this.ensure(other, n, this.width + seqLen);
    return this.views(other, n, this.width + seqLen);
  }

  /** The forward ran: its present (in the other arena) is the resident past now. `counts[slot]` new tokens per row, right-aligned. */
  commit(seqLen: number, counts: readonly number[]): void {
    const n = this.seqIds.length;
    const W = this.width;
    const T = W + seqLen;
    const mask = new Uint8Array(n * T);
    for (let slot = 0; slot < n; slot++) {
      mask.set(this.mask.subarray(slot * W, (slot + 1) * W), slot * T);
      mask.fill(1, slot * T + T - counts[slot]!, (slot + 1) * T);
      this.pastLens[slot]! += counts[slot]!;
    }
    this.mask = mask;
    this.width = T;
    this.cur = 1 - this.cur;
  }

  /** The staged arena becomes the resident one, holding `row` alone: the blocks past its first `tokens` are copied in. */
  private adoptStaged(row: ResidentRow, tokens: number): ResidentBatch {
    const W = row.pastLen;
    const resident = this.arenas[this.cur];
    this.arenas[this.cur] = this.spare;
    this.spare = resident;
    const past = this.views(this.cur, 1, W);
    gatherRow(this.pool, this.layout, { blockTable: row.blockTable, len: W }, past, 0, W, tokens);
    this.seqIds = [row.seqId];
    this.pastLens = [W];
    this.width = W;
    this.mask = new Uint8Array(W).fill(1);
    return { slotOf: [0], width: W, past, pastMask: this.mask, gatheredTokens: W - tokens };
  }

  /** Drops every row (after a failed forward, the arenas' contents are unknown). */
  clear(): void {
    this.staged = undefined;
    this.seqIds = [];
    this.pastLens = [];
    this.width = 0;
    this.mask = new Uint8Array(0);
  }

  /** Moves the last row into `slot`'s place. */
  private drop(slot: number): void {
    const last = this.seqIds.length - 1;
    const W = this.width;
    if (slot !== last) {
      const f = this.rowFloats(W);
      const a = this.arenas[this.cur];
      for (const buf of [...a.key, ...a.value]) buf.copyWithin(slot * f, last * f, (last + 1) * f);
      this.mask.copyWithin(slot * W, last * W, (last + 1) * W);
      this.seqIds[slot] = this.seqIds[last]!;
      this.pastLens[slot] = this.pastLens[last]!;
    }
    this.seqIds.pop();
    this.pastLens.pop();
    this.mask = this.mask.subarray(0, last * W);
  }

  /** Masks out the row's columns past `pastLen` (its last set columns). */
  private rollBack(slot: number, pastLen: number): void {
    const W = this.width;
    let extra = this.pastLens[slot]! - pastLen;
    for (let j = (slot + 1) * W - 1; extra > 0 && j >= slot * W; j--) {
      if (this.mask[j] === 0) continue;
      this.mask[j] = 0;
      extra--;
    }
    this.pastLens[slot] = pastLen;
  }

  /** Copies every row in from its blocks, right-aligned at the narrowest width, into the other arena. */
  private rebuild(rows: readonly ResidentRow[], width: number, seqLen: number): number {
    const other = 1 - this.cur;
    const n = rows.length;
    // Room for the present that follows, so the step after this one does not grow the arena again.
    this.ensure(other, n, width + seqLen);
    const dst = this.views(other, n, width);
    const mask = new Uint8Array(n * width);
    rows.forEach((r, slot) => {
      gatherRow(this.pool, this.layout, { blockTable: r.blockTable, len: r.pastLen }, dst, slot, width);
      mask.fill(1, (slot + 1) * width - r.pastLen, (slot + 1) * width);
    });
    this.seqIds = rows.map((r) => r.seqId);
    this.pastLens = rows.map((r) => r.pastLen);
    this.width = width;
    this.mask = mask;
    this.cur = other;
    return rows.reduce((a, r) => a + r.pastLen, 0);
  }

  /** Gives arena `i` room for `rows` rows of `width` columns; its contents are lost if it grows. */
  private ensure(i: number, rows: number, width: number): void {
    this.ensureArena(this.arenas[i]!, rows, width);
  }

  private ensureArena(a: Arena, rows: number, width: number): void {
    if (a.floats >= rows * this.rowFloats(width)) return;
    const size = Math.ceil(rows * (1 + ARENA_HEADROOM) + 1) * this.rowFloats(Math.ceil(width * (1 + ARENA_HEADROOM)) + ARENA_SPARE_COLUMNS);
    // Drop the old buffers first, so that the old and new arena are not both held.
    a.key = [];
    a.value = [];
    for (let l = 0; l < this.layout.numLayers; l++) {
      a.key.push(new Float32Array(size));
      a.value.push(new Float32Array(size));
    }
    a.floats = size;
  }

  private views(i: number, rows: number, width: number): LayerKv[] {
    return this.viewsOf(this.arenas[i]!, rows, width);
  }

  private viewsOf(a: Arena, rows: number, width: number): LayerKv[] {
    const f = rows * this.rowFloats(width);
    return a.key.map((k, l) => ({ key: k.subarray(0, f), value: a.value[l]!.subarray(0, f) }));
  }
}
