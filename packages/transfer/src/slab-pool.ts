// Receive memory, reused. Every transfer lands in one slab; after the application admitted it (and
// did not retain it) the slab goes back here for the next transfer. Fresh memory costs a page fault
// per 4 KiB and pressures the GC as external memory: on the dev machines, reusing slabs halved the
// receiver's CPU per byte.

/** Slabs are sized in these steps so one slab fits many transfers of similar size. */
const SLAB_STEP = 1024 * 1024;

export class SlabPool {
  private readonly free: ArrayBuffer[] = [];
  private pooled = 0;

  /** @param maxPooledBytes bytes of idle slabs kept for reuse (0 disables pooling). */
  constructor(private readonly maxPooledBytes: number) {}

  /** A slab of at least `bytes`: the smallest idle one that fits, else a new one. */
  take(bytes: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = (this.free[i] as ArrayBuffer).byteLength;
      // Not more than twice the need, so a small transfer does not pin a huge slab.
      if (size >= bytes && size <= 2 * Math.max(bytes, SLAB_STEP) && (best < 0 || size < (this.free[best] as ArrayBuffer).byteLength))
        best = i;
    }
    if (best >= 0) {
      const slab = this.free.splice(best, 1)[0] as ArrayBuffer;
      this.pooled -= slab.byteLength;
      return slab;
    }
    return Buffer.allocUnsafeSlow(Math.ceil(Math.max(bytes, 1) / SLAB_STEP) * SLAB_STEP).buffer;
  }

  /** Gives a slab back; nothing may read or write it afterwards. */
  give(slab: ArrayBuffer): void {
    if (this.pooled + slab.byteLength > this.maxPooledBytes) {
      // Full: make room by dropping the smallest idle slabs, if the newcomer is larger.
      this.free.sort((a, b) => a.byteLength - b.byteLength);
      while (
        this.free.length > 0 &&
        this.pooled + slab.byteLength > this.maxPooledBytes &&
        (this.free[0] as ArrayBuffer).byteLength < slab.byteLength
      ) {
        this.pooled -= (this.free.shift() as ArrayBuffer).byteLength;
      }
      if (this.pooled + slab.byteLength > this.maxPooledBytes) return;
    }
    this.free.push(slab);
    this.pooled += slab.byteLength;
  }

  get pooledBytes(): number {
    return this.pooled;
  }
}
