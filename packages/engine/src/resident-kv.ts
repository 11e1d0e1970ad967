// The decode batch's KV, kept dense between steps so that a step costs the model's own work and not a
// copy of every row's whole past out of the paged blocks. A model's `past` input is one [batch, kvHeads,
// width, headDim] tensor per layer; here it is an arena whose width is its capacity in columns, the
// columns past the ones in use masked out. A forward returns only its new tokens' KV (ModelRunner.forwardNew),
// which is written into the next free columns in place: the past is never copied out of the model (as
// fetching its `present`, past ++ new, would do every step) nor into a second buffer. Only what changed
// moves: a sequence that joins is copied in from its blocks (one row; leading blocks it shares with a row
// joining with it, a common prompt prefix, are copied from that row's columns), one that leaves is replaced
// by the last row (one row), a rolled-back one only has columns masked out. A full copy from the blocks
// (the arena laid out anew: every row's past is in its blocks, so what the arena held is not needed)
// happens when a joining row is longer than the columns in use, when masked-out columns waste more than an
// eighth of them, or when the arena is out of columns or of rows (its buffers hold no more). A full copy
// lays the arena out at a width that follows from the columns in use alone (ensureArena), and a row that
// joins an empty batch is always copied in that way: what a sequence decoded alone computes does not depend
// on the requests before it.
// The arena's buffers are kept as they grow: fresh memory is slow to touch on some hosts (a VM here took
// up to ~1 s to first-touch the 1 GiB a batch of 32 rows of 1 k tokens needs at the preset, against
// ~0.15 s to copy the rows into memory already touched).
//
// A prompt whose KV streams in from a prefill worker is staged: each part's blocks are copied, as they
// land, into a second arena laid out as that prompt's row, so that when it joins an empty batch the arena
// becomes the resident one and only the blocks that came after the first token are copied from the pool.
// A decode worker that computes the prompt's last block itself (its blocks before it streamed in) runs
// that block as a decode row on the staged row the same way, and the row stays resident for its decode.
// One prompt is staged at a time (another prompt's first part replaces it); anything else joins as above.
import type { KvLayout } from '@pdserve/kv-cache';
import type { LayerKv } from '@pdserve/model';
import { copyBlock, gatherRow, gatherRows, type RowBlocks } from './kv-io';

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
  /** Columns of `past`: the arena's, those past the ones in use masked out. */
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
 * Arenas are laid out larger than needed, so that a growing batch or context is copied in again from its
 * blocks rarely: this fraction more rows plus one, and this fraction more columns plus a few. Columns are
 * not free: the model attends over all of them, masked or not, every step, where the copy is paid once per
 * headroom. At the preset, batch 32 over 2 k columns (a VM here), 170 more columns cost a step 17–63 ms of
 * ~500 and a copy from the blocks ~250 ms; a headroom near √(2 · copy ÷ cost per column), a few tens of
 * columns, costs least. A 2,049-column past is laid out 2,130 wide (2,242 before), a 1,025-column one 1,090.
 */
const ARENA_ROW_HEADROOM = 1 / 8;
const ARENA_COLUMN_HEADROOM = 1 / 64;
const ARENA_SPARE_COLUMNS = 48;
/**
 * Buffers are made this much larger than the layout that needed them, so that a layout a few columns wider
 * (the context grew past the headroom) is laid out in the memory already touched; pages never written are
 * not committed.
 */
const ARENA_BUFFER_HEADROOM = 1 / 4;

/** Per layer, K and V of `rows` rows of `cols` columns each: [rows, kvHeads, cols, headDim]. */
interface Arena {
  key: Float32Array[];
  value: Float32Array[];
  rows: number;
  cols: number;
}

const emptyArena = (): Arena => ({ key: [], value: [], rows: 0, cols: 0 });

export class ResidentKv {
  /** The resident past. */
  private arena: Arena = emptyArena();
  private seqIds: number[] = [];
  private pastLens: number[] = [];
  /** Columns in use (every row's past is right-aligned at it, holes aside); new tokens go after. */
  private used = 0;
  /** [rows, cols of the resident arena]. */
  private mask = new Uint8Array(0);
  /** The staged prompt: its row's first `tokens` columns (of `width`, its length) are in `spare`. */
  private staged: { readonly key: string; readonly width: number; tokens: number } | undefined;
  private spare: Arena = emptyArena();

  constructor(
    private readonly layout: KvLayout,
    private readonly pool: Float32Array,
  ) {}

  /** Floats of one row of `cols` columns, per layer and K or V. */
  private rowFloats(cols: number): number {
    return this.layout.numKvHeads * cols * this.layout.headDim;
  }

  private get cols(): number {
    return this.arena.cols;
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
      ensureArena(this.spare, this.layout, 1, promptLen + 1);
      this.staged = { key, width: promptLen, tokens: 0 };
    }
    const s = this.staged;
    if (fromBlock * bs !== s.tokens) return;
    const dst = this.viewsOf(this.spare, 1);
    for (const b of blocks) {
      if (s.tokens + bs > s.width) break;
      copyBlock(b, 0, this.layout, bs, dst, 0, this.spare.cols, s.tokens);
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
    // Nothing resident: whatever joins is laid out afresh (rebuild), as it would be in a new engine.
    if (this.seqIds.length === 0) this.used = 0;
    const staged = this.staged;
    if (staged !== undefined && rows.some((r) => r.stagedKey === staged.key)) {
      this.staged = undefined; // used now, or copied in from the blocks as any other row
      const r = rows[0]!;
      // A prompt's first decode (its past the whole prompt), or its last tokens computed here (past the blocks before them).
      const adoptable = this.seqIds.length === 0 && rows.length === 1 && r.pastLen <= staged.width;
      if (adoptable && r.pastLen + seqLen <= this.spare.cols) return this.adoptStaged(r, Math.min(staged.tokens, r.pastLen));
    }
    const resident = new Set(this.seqIds);
    const joining = rows.filter((r) => !resident.has(r.seqId));
    const maxPast = rows.reduce((m, r) => Math.max(m, r.pastLen), 0);
    const wasted = this.used - maxPast;
    const fits = joining.every((r) => r.pastLen <= this.used);
    const arena = this.arena;
    // Rows past those the arena was laid out for still join in place where its buffers hold them (a row's
    // place does not depend on how many follow it): the resident rows are not copied again.
    const room = rows.length * this.rowFloats(arena.cols) <= (arena.key[0]?.length ?? 0) && this.used + seqLen <= arena.cols;
    let gathered = 0;
    if (!fits || !room || wasted > Math.max(WASTE_MIN_COLUMNS, this.used * WASTE_FRACTION)) {
      gathered = this.rebuild(rows, maxPast, seqLen);
    } else if (joining.length > 0) {
      const C = arena.cols;
      const first = this.seqIds.length;
      const n = first + joining.length;
      const past = joining.map((r) => ({ blockTable: r.blockTable, len: r.pastLen }));
      gatherRows(this.pool, this.layout, past, this.views(n), first, this.used, C);
      const mask = new Uint8Array(n * C);
      mask.set(this.mask.subarray(0, first * C));
      joining.forEach((r, i) => {
        const slot = first + i;
        this.seqIds.push(r.seqId);
        this.pastLens.push(r.pastLen);
        mask.fill(1, slot * C + this.used - r.pastLen, slot * C + this.used);
        gathered += r.pastLen;
      });
      this.mask = mask;
    }
    const slotOf = rows.map((r) => this.seqIds.indexOf(r.seqId));
    const n = this.seqIds.length;
    return { slotOf, width: this.cols, past: this.views(n), pastMask: this.mask.subarray(0, n * this.cols), gatheredTokens: gathered };
  }

  /**
   * The forward ran: `newKv` ([rows, kvHeads, seqLen, headDim] per layer, rows in slot order) goes into
   * the next `seqLen` columns; `counts[slot]` of each row's are its new tokens (right-aligned), the rest padding.
   */
  commit(seqLen: number, counts: readonly number[], newKv: readonly LayerKv[]): void {
    const { numKvHeads: H, headDim: D } = this.layout;
    const n = this.seqIds.length;
    const C = this.cols;
    const arena = this.arena;
    newKv.forEach((kv, l) => {
      const key = arena.key[l]!;
      const value = arena.value[l]!;
      for (let rh = 0; rh < n * H; rh++) {
        const src = rh * seqLen * D;
        const dst = (rh * C + this.used) * D;
        key.set(kv.key.subarray(src, src + seqLen * D), dst);
        value.set(kv.value.subarray(src, src + seqLen * D), dst);
      }
    });
    for (let slot = 0; slot < n; slot++) {
      const end = slot * C + this.used + seqLen;
      this.mask.fill(1, end - counts[slot]!, end);
      this.pastLens[slot]! += counts[slot]!;
    }
    this.used += seqLen;
  }

  /** The staged arena becomes the resident one, holding `row` alone: the blocks past its first `tokens` are copied in. */
  private adoptStaged(row: ResidentRow, tokens: number): ResidentBatch {
    const W = row.pastLen;
    const resident = this.arena;
    this.arena = this.spare;
    this.spare = resident;
    const C = this.cols;
    const past = this.views(1);
    gatherRow(this.pool, this.layout, { blockTable: row.blockTable, len: W }, past, 0, W, tokens, C);
    this.seqIds = [row.seqId];
    this.pastLens = [W];
    this.used = W;
    this.mask = new Uint8Array(C).fill(1, 0, W);
    return { slotOf: [0], width: C, past, pastMask: this.mask, gatheredTokens: W - tokens };
  }

  /** Drops every row (after a failed forward, the arenas' contents are unknown). */
  clear(): void {
    this.staged = undefined;
    this.seqIds = [];
    this.pastLens = [];
    this.used = 0;
    this.mask = new Uint8Array(0);
  }

  /** Moves the last row into `slot`'s place. */
  private drop(slot: number): void {
    const last = this.seqIds.length - 1;
    const C = this.cols;
    if (slot !== last) {
      const f = this.rowFloats(C);
      const a = this.arena;
      for (const buf of [...a.key, ...a.value]) buf.copyWithin(slot * f, last * f, (last + 1) * f);
      this.mask.copyWithin(slot * C, last * C, (last + 1) * C);
      this.seqIds[slot] = this.seqIds[last]!;
      this.pastLens[slot] = this.pastLens[last]!;
    }
    this.seqIds.pop();
    this.pastLens.pop();
    this.mask = this.mask.subarray(0, last * C);
  }

  /** Masks out the row's columns past `pastLen` (its last set columns). */
  private rollBack(slot: number, pastLen: number): void {
    const C = this.cols;
    let extra = this.pastLens[slot]! - pastLen;
    for (let j = slot * C + this.used - 1; extra > 0 && j >= slot * C; j--) {
      if (this.mask[j] === 0) continue;
      this.mask[j] = 0;
      extra--;
    }
    this.pastLens[slot] = pastLen;
  }

  /**
   * Copies every row in from its blocks, right-aligned at `used` columns, into the arena laid out anew: what
   * it held is not read (every row's past is in its blocks), so no second arena is needed.
   */
  private rebuild(rows: readonly ResidentRow[], used: number, seqLen: number): number {
    const n = rows.length;
    ensureArena(this.arena, this.layout, n, used + seqLen);
    const C = this.arena.cols;
    const mask = new Uint8Array(n * C);
    gatherRows(
      this.pool,
      this.layout,
      rows.map((r) => ({ blockTable: r.blockTable, len: r.pastLen })),
      this.views(n),
      0,
      used,
      C,
    );
    rows.forEach((r, slot) => mask.fill(1, slot * C + used - r.pastLen, slot * C + used));
    this.seqIds = rows.map((r) => r.seqId);
    this.pastLens = rows.map((r) => r.pastLen);
    this.used = used;
    this.mask = mask;
    return rows.reduce((a, r) => a + r.pastLen, 0);
  }

  /** The resident arena's first `rows` rows, per layer. */
  private views(rows: number): LayerKv[] {
    return this.viewsOf(this.arena, rows);
  }

  private viewsOf(a: Arena, rows: number): LayerKv[] {
    const f = rows * this.rowFloats(a.cols);
    return a.key.map((k, l) => ({ key: k.subarray(0, f), value: a.value[l]!.subarray(0, f) }));
  }
}

/**
 * Lays `a` out for at least `rows` rows of `cols` columns, at a width that is a function of `cols` alone (the
 * columns plus headroom), never of what the arena held before; its contents are lost. Buffers that hold the
 * layout are reused, else larger ones are made. The width is the inner dimension of the model's attention
 * sums, and onnxruntime's sums are not the same to the last bit at every width (a decode step's logits here
 * differed by up to 1.4e-5 between a past 11 and 12 columns wide, the 12th masked out): with a width that
 * depended on earlier requests, a sequence decoded alone gave logits that differed in the last bits from one
 * run to the next, which a seeded sample can turn into another token.
 */
function ensureArena(a: Arena, layout: KvLayout, rows: number, cols: number): void {
  a.cols = Math.ceil(cols * (1 + ARENA_COLUMN_HEADROOM)) + ARENA_SPARE_COLUMNS;
  const rowFloats = layout.numKvHeads * a.cols * layout.headDim;
  const held = a.key[0]?.length ?? 0;
  if (a.rows < rows || held < a.rows * rowFloats) a.rows = Math.ceil(rows * (1 + ARENA_ROW_HEADROOM) + 1);
  if (held >= a.rows * rowFloats) return;
  const size = Math.ceil(a.rows * rowFloats * (1 + ARENA_BUFFER_HEADROOM));
  // Drop the old buffers first, so that the old and new arena are not both held.
  a.key = [];
  a.value = [];
  for (let l = 0; l < layout.numLayers; l++) {
    a.key.push(new Float32Array(size));
    a.value.push(new Float32Array(size));
  }
}
