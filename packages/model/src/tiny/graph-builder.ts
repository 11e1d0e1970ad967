// A small helper for writing ONNX graphs by hand: nodes get unique readable names, constants become
// inline initializers, weights are declared by name and materialised later by the file writer.
import onnxProto from 'onnx-proto';
import type { QuantizedPart } from './quantize';

const { onnx } = onnxProto;
/** Integer, integer list or string attributes: all this graph needs (float values go in as constants). */
type AttributeValue = number | readonly number[] | string;

/** A learned float32 tensor; its bytes are generated from (seed, name) when the file is written. */
export interface FloatWeight {
  readonly name: string;
  readonly dims: readonly number[];
  /** Uniform init: mean ± std·√3. */
  readonly mean: number;
  readonly std: number;
}

/** A tensor the graph reads: a float weight, or one tensor of a float weight's quantized form (quantize.ts). */
export type WeightSpec = FloatWeight | QuantizedPart;

/** One symbolic or fixed dimension of a graph input/output. */
export type Dim = string | number;

export class GraphBuilder {
  readonly nodes: onnxProto.onnx.INodeProto[] = [];
  readonly constants: onnxProto.onnx.ITensorProto[] = [];
  readonly weights: WeightSpec[] = [];
  readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly used = new Map<string, number>();

  input(name: string, elemType: number, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Marks `value` as the graph output `name` (an Identity when the names differ). */
  output(value: string, name: string, elemType: number, dims: readonly Dim[]): void {
    if (value !== name) this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `${name}/Identity` });
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  weight(spec: WeightSpec): string {
    this.weights.push(spec);
    return spec.name;
  }

  constI64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    return this.constant(onnx.TensorProto.DataType.INT64, dims, new Uint8Array(data.buffer));
  }

  constF32(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.constant(onnx.TensorProto.DataType.FLOAT, dims, new Uint8Array(new Float32Array(values).buffer));
  }

  /** Adds a node with one output and returns the output's name. */
  op(opType: string, inputs: readonly string[], name: string, attrs: Record<string, AttributeValue> = {}, domain = ''): string {
    return this.opN(opType, inputs, name, 1, attrs, domain)[0]!;
  }

  /** Adds a node with `count` outputs; `domain` names an operator set other than ONNX's (e.g. com.microsoft). */
  opN(
    opType: string,
    inputs: readonly string[],
    name: string,
    count: number,
    attrs: Record<string, AttributeValue> = {},
    domain = '',
  ): string[] {
    const nodeName = this.unique(`${name}/${opType}`);
    const output = Array.from({ length: count }, (_, i) => `${nodeName}_output_${i}`);
    this.nodes.push({
      opType,
      input: [...inputs],
      output,
      name: nodeName,
      ...(domain ? { domain } : {}),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return output;
  }

  private constant(dataType: number, dims: readonly number[], rawData: Uint8Array): string {
    const name = this.unique('/const');
    this.constants.push({ name, dataType, dims: [...dims], rawData });
    return name;
  }

  private unique(base: string): string {
    const n = this.used.get(base) ?? 0;
    this.used.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }
}

function attribute(name: string, v: AttributeValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  const ints = typeof v === 'number' ? [v] : v;
  if (!ints.every(Number.isInteger)) throw new TypeError(`attribute ${name} must hold integers, got ${String(v)}`);
  return typeof v === 'number' ? { name, type: T.INT, i: v } : { name, type: T.INTS, ints: [...v] };
}

function valueInfo(name: string, elemType: number, dims: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  const dim = dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}
