// Turns a built graph into the bytes of model.onnx, with weights either inline or as ONNX external data in
// one side file (ONNX's own layout: location/offset/length per initializer).
import { endianness } from 'node:os';
import onnxProto from 'onnx-proto';
import type { GraphBuilder, WeightSpec } from './graph-builder';
import { MS_DOMAIN } from './quantize';
import { byteLength, dataTypeOf, weightBytes } from './weights';

const { onnx } = onnxProto;

/** Opset 17 with IR 8, as ONNX 1.12 (the first release with opset 17) writes it. */
export const OPSET = 17;
const IR_VERSION = 8;
/** As onnx.save(..., align_offset=True): tensors of 1 MiB or more start on a 64 KiB boundary so they can be mmapped. */
const ALIGN_THRESHOLD = 1 << 20;
const ALLOCATION_GRANULARITY = 1 << 16;
/** Smaller tensors still start on a cache line. */
const SMALL_ALIGN = 64;

export interface ExternalEntry {
  readonly spec: WeightSpec;
  readonly offset: number;
  readonly length: number;
}

export interface ExternalDataPlan {
  /** File name, relative to model.onnx. */
  readonly location: string;
  readonly entries: readonly ExternalEntry[];
  /** Total file size, padding included. */
  readonly size: number;
}

export function planExternalData(weights: readonly WeightSpec[], location: string): ExternalDataPlan {
  let offset = 0;
  const entries = weights.map((spec) => {
    const length = byteLength(spec);
    const align = length >= ALIGN_THRESHOLD ? ALLOCATION_GRANULARITY : SMALL_ALIGN;
    offset = Math.ceil(offset / align) * align;
    const entry = { spec, offset, length };
    offset += length;
    return entry;
  });
  return { location, entries, size: offset };
}

/** model.onnx bytes. With a plan the initializers point into its file; without, weights are generated inline. */
export function encodeModel(graph: GraphBuilder, seed: number, plan?: ExternalDataPlan): Uint8Array {
  if (endianness() !== 'LE') throw new Error('tiny model: ONNX raw data is little-endian; this host is not');
  const { FLOAT, UINT8 } = onnx.TensorProto.DataType;
  const dataType = (spec: WeightSpec): number => ({ float32: FLOAT, uint8: UINT8 })[dataTypeOf(spec)];
  const weights: onnxProto.onnx.ITensorProto[] = plan
    ? plan.entries.map((e) => ({
        name: e.spec.name,
        dataType: dataType(e.spec),
        dims: [...e.spec.dims],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: plan.location },
          { key: 'offset', value: String(e.offset) },
          { key: 'length', value: String(e.length) },
        ],
      }))
    : graph.weights.map((spec) => ({ name: spec.name, dataType: dataType(spec), dims: [...spec.dims], rawData: weightBytes(seed, spec) }));
  // onnxruntime's contrib operators (quantized MatMuls), imported only by graphs that use one.
  const contrib = graph.nodes.some((n) => n.domain === MS_DOMAIN);
  const model: onnxProto.onnx.IModelProto = {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }, ...(contrib ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
    producerName: 'pdserve',
    producerVersion: '0.1.0',
    docString: 'pdserve built-in tiny Llama (random weights)',
    graph: {
      name: 'tiny_llama',
      node: graph.nodes,
      initializer: [...graph.constants, ...weights],
      input: graph.inputs,
      output: graph.outputs,
    },
  };
  return onnx.ModelProto.encode(model).finish();
}
