// Weight bytes, generated on demand from (seed, tensor name) so a tensor never has to be held whole
// unless it is written inline.
import type { WeightSpec } from './graph-builder';
import { Prng } from './prng';

/** Floats generated per chunk when streaming (4 MiB). */
const CHUNK_FLOATS = 1 << 20;

export function elementCount(spec: WeightSpec): number {
  return spec.dims.reduce((a, d) => a * d, 1);
}

export function byteLength(spec: WeightSpec): number {
  return elementCount(spec) * Float32Array.BYTES_PER_ELEMENT;
}

/** Yields the tensor's little-endian float32 bytes in order, chunk by chunk (the buffer is reused). */
export function* weightChunks(seed: number, spec: WeightSpec): Generator<Uint8Array> {
  const prng = new Prng(seed, spec.name);
  const total = elementCount(spec);
  const buf = new Float32Array(Math.min(CHUNK_FLOATS, total));
  for (let done = 0; done < total; done += buf.length) {
    const chunk = buf.subarray(0, Math.min(buf.length, total - done));
    prng.fillUniform(chunk, spec.mean, spec.std);
    yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
}

/** The whole tensor in one fresh buffer. */
export function weightBytes(seed: number, spec: WeightSpec): Uint8Array {
  const out = new Uint8Array(byteLength(spec));
  let offset = 0;
  for (const chunk of weightChunks(seed, spec)) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
