// Files to write, each knowing its size up front so progress can be reported against a known total.
import { open, type FileHandle } from 'node:fs/promises';
import type { ExternalDataPlan } from './onnx-file';
import { weightChunks } from './weights';

/** Largest single write; keeps progress smooth on big inline buffers. */
const WRITE_SLICE = 4 << 20;

export interface FileJob {
  readonly path: string;
  readonly size: number;
  write(fh: FileHandle, advance: (bytes: number) => void): Promise<void>;
}

export function bytesJob(path: string, bytes: Uint8Array): FileJob {
  return {
    path,
    size: bytes.byteLength,
    async write(fh, advance) {
      for (let at = 0; at < bytes.byteLength; at += WRITE_SLICE) {
        const slice = bytes.subarray(at, Math.min(at + WRITE_SLICE, bytes.byteLength));
        await fh.write(slice);
        advance(slice.byteLength);
      }
    },
  };
}

export function jsonJob(path: string, value: unknown): FileJob {
  return bytesJob(path, new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n'));
}

/** The external data file: each weight generated chunk by chunk and written at its planned offset. */
export function externalDataJob(path: string, plan: ExternalDataPlan, seed: number): FileJob {
  return {
    path,
    size: plan.size,
    async write(fh, advance) {
      let at = 0;
      for (const e of plan.entries) {
        if (e.offset > at) {
          await fh.write(new Uint8Array(e.offset - at));
          advance(e.offset - at);
        }
        for (const chunk of weightChunks(seed, e.spec)) {
          await fh.write(chunk);
          advance(chunk.byteLength);
        }
        at = e.offset + e.length;
      }
    },
  };
}

/** Writes the jobs in order, reporting cumulative bytes against the total of all jobs. */
export async function writeJobs(jobs: readonly FileJob[], onProgress?: (doneBytes: number, totalBytes: number) => void): Promise<void> {
  const total = jobs.reduce((a, j) => a + j.size, 0);
  let done = 0;
  onProgress?.(0, total);
  for (const job of jobs) {
    const fh = await open(job.path, 'w');
    try {
      await job.write(fh, (n) => {
        done += n;
        onProgress?.(done, total);
      });
    } finally {
      await fh.close();
    }
  }
}
