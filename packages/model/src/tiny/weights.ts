// Weight bytes, generated on demand from (seed, tensor name) so a tensor never has to be held whole
// unless it is written inline or quantized.
import type { WeightSpec } from './graph-builder';
import { Prng } from './prng';
import { quantize, type QuantizedPart } from './quantize';

/** Floats generated per chunk when streaming (4 MiB). */
const CHUNK_FLOATS = 1 << 20;
const ELEMENT_BYTES = { float32: 4, uint8: 1 } as const;

export function elementCount(spec: WeightSpec): number {
  return spec.dims.reduce((a, d) => a * d, 1);
}

export function dataTypeOf(spec: WeightSpec): keyof typeof ELEMENT_BYTES {
  return 'source' in spec ? spec.dataType : 'float32';
}

export function byteLength(spec: WeightSpec): number {
  return elementCount(spec) * ELEMENT_BYTES[dataTypeOf(spec)];
}

/** Yields the tensor's little-endian bytes in order, chunk by chunk (the buffer is reused). */
export function* weightChunks(seed: number, spec: WeightSpec): Generator<Uint8Array> {
  if ('source' in spec) {
    yield quantizedBytes(seed, spec);
    return;
  }
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

/** The last weight quantized: its values and scales are written one after the other. */
let last: { key: string; values: Uint8Array; scales: Float32Array } | undefined;

function quantizedBytes(seed: number, part: QuantizedPart): Uint8Array {
  const key = JSON.stringify([seed, part.source.name, part.layout, part.quantization]);
  if (last?.key !== key) {
    // The float weight's own values, as weightChunks generates them.
    const floats = new Float32Array(weightBytes(seed, part.source).buffer);
    last = { key, ...quantize(floats, part.source, part.layout, part.quantization) };
  }
  const t = part.tensor === 'values' ? last.values : last.scales;
  return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}
