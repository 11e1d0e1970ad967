// CRC-32 off the receiving thread. A tcp transfer's receiving thread both lets the kernel copy the bytes
// into the receive slab and checks every block's CRC-32; on a 2-core host with the sender on the other
// core, the check alone was ~30 % of the receiver's CPU per byte, and the transfer waited for it
// (docs/benchmarks.md, kv-store at the preset). Here one worker thread per process computes the CRCs of
// blocks that lie in SharedArrayBuffer slabs, while the receiving thread reads the next batch; the
// receiver still compares each result with the sender's checksum before it counts the block verified,
// and hands out nothing before every block is (see BlockAssembly).
import { Worker } from 'node:worker_threads';
import { crc32ModulePath } from '@pdserve/kv-cache';

/** The worker's code (CommonJS, no TypeScript): CRC-32 of each [offset, length) span of one shared buffer. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const crc = workerData.module === null ? require('node:zlib').crc32 : require(workerData.module).crc32;
parentPort.on('message', (m) => {
  const out = new Uint32Array(m.spans.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = crc(new Uint8Array(m.buffer, m.spans[2 * i], m.spans[2 * i + 1]), 0) >>> 0;
  parentPort.postMessage({ id: m.id, crcs: out }, [out.buffer]);
});
`;

interface Pending {
  readonly resolve: (crcs: Uint32Array) => void;
  readonly reject: (e: Error) => void;
}

export class CrcThread {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private broken = false;

  /** False once the worker could not start or died: callers check on their own thread instead. */
  get usable(): boolean {
    return !this.broken;
  }

  /** CRC-32 of each span (offset, length pairs) of `buffer`, computed on the worker thread. */
  crcs(buffer: SharedArrayBuffer, spans: readonly number[]): Promise<Uint32Array> {
    const w = this.start();
    if (w === null) return Promise.reject(new Error('CRC worker unavailable'));
    const id = this.nextId++;
    return new Promise<Uint32Array>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) w.ref(); // keeps the process up only while a check is under way
      w.postMessage({ id, buffer, spans: Float64Array.from(spans) });
    });
  }

  private start(): Worker | null {
    if (this.worker !== null || this.broken) return this.worker;
    try {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: crc32ModulePath } });
      w.unref();
      w.on('message', (m: { id: number; crcs: Uint32Array }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (this.pending.size === 0) w.unref();
        p?.resolve(m.crcs);
      });
      const die = (e: Error): void => {
        this.broken = true;
        this.worker = null;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      };
      w.on('error', die);
      w.on('exit', (code) => die(new Error(`CRC worker exited (${code})`)));
      this.worker = w;
    } catch {
      this.broken = true;
    }
    return this.worker;
  }
}

let shared: CrcThread | null = null;

/** The process's CRC thread, started on first use. */
export function crcThread(): CrcThread {
  shared ??= new CrcThread();
  return shared;
}
