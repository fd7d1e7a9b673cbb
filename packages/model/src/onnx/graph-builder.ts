/**
 * A small builder for ONNX graphs generated in code: declare inputs, chain ops (each returns
 * its output's value name), declare outputs, and serialise with `toBytes()`.
 */
import { ExpertMeshError, Code } from "@expertmesh/shared";
import {
  encodeOnnxModel,
  OnnxDataType,
  type OnnxAttribute,
  type OnnxAttributeValue,
  type OnnxDim,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from "./onnx-proto.ts";

export type OnnxElementType = "float32" | "int64" | "int32" | "bool";

const DATA_TYPES: Readonly<Record<OnnxElementType, OnnxDataType>> = {
  float32: OnnxDataType.FLOAT,
  int64: OnnxDataType.INT64,
  int32: OnnxDataType.INT32,
  bool: OnnxDataType.BOOL,
};

/** A float attribute (plain numbers are INT attributes, arrays of numbers INTS). */
export interface FloatAttr {
  readonly float: number;
}
export interface FloatsAttr {
  readonly floats: readonly number[];
}
export type AttrInput = number | readonly number[] | string | FloatAttr | FloatsAttr;

export const floatAttr = (value: number): FloatAttr => ({ float: value });

export interface OpOptions {
  /** Output value names (default: generated). Also fixes how many outputs the node has. */
  outputs?: readonly string[];
  domain?: string;
}

/** The default-domain opset our graphs are written against. */
export const DEFAULT_OPSET = 17;

export class GraphBuilder {
  private readonly nodes: OnnxNode[] = [];
  private readonly initializers: OnnxTensor[] = [];
  private readonly inputs: OnnxValueInfo[] = [];
  private readonly outputs: OnnxValueInfo[] = [];
  private readonly names = new Set<string>();
  private readonly domains = new Set<string>();
  private counter = 0;

  constructor(
    readonly name: string,
    readonly opset: number = DEFAULT_OPSET,
  ) {}

  /** Declares a graph input; dims are sizes or symbolic names ("T"). Returns its value name. */
  input(name: string, type: OnnxElementType, dims: readonly OnnxDim[]): string {
    this.claim(name);
    this.inputs.push({ name, dataType: DATA_TYPES[type], dims });
    return name;
  }

  /** Declares an existing value as a graph output. */
  output(value: string, type: OnnxElementType, dims: readonly OnnxDim[]): string {
    if (!this.names.has(value))
      throw new ExpertMeshError(Code.INTERNAL, `graph ${this.name}: unknown output value ${value}`);
    this.outputs.push({ name: value, dataType: DATA_TYPES[type], dims });
    return value;
  }

  /** Adds a node with one output and returns the output's name. */
  op(
    type: string,
    inputs: readonly string[],
    attrs: Readonly<Record<string, AttrInput>> = {},
    options: OpOptions = {},
  ): string {
    const outs = this.opN(type, inputs, options.outputs?.length ?? 1, attrs, options);
    return outs[0] as string;
  }

  /** Adds a node with `count` outputs and returns their names. */
  opN(
    type: string,
    inputs: readonly string[],
    count: number,
    attrs: Readonly<Record<string, AttrInput>> = {},
    options: OpOptions = {},
  ): string[] {
    for (const i of inputs) {
      if (i !== "" && !this.names.has(i))
        throw new ExpertMeshError(Code.INTERNAL, `graph ${this.name}: ${type} reads unknown value ${i}`);
    }
    const outputs = options.outputs
      ? [...options.outputs]
      : Array.from({ length: count }, () => this.fresh(type));
    for (const o of outputs) this.claim(o);
    if (options.domain !== undefined) this.domains.add(options.domain);
    this.nodes.push({
      opType: type,
      inputs,
      outputs,
      name: `${type}_${this.nodes.length}`,
      domain: options.domain,
      attributes: Object.entries(attrs).map(
        ([name, v]) => ({ name, value: toAttributeValue(v) }) satisfies OnnxAttribute,
      ),
    });
    return outputs;
  }

  /** Adds a constant (an initializer) and returns its value name. */
  constant(
    type: "float32" | "int64" | "int32",
    dims: readonly number[],
    values: ArrayLike<number>,
    name?: string,
  ): string {
    const n = name ?? this.fresh("const");
    this.claim(n);
    this.initializers.push({
      name: n,
      dataType: DATA_TYPES[type],
      dims,
      rawData: encodeElements(type, values),
    });
    return n;
  }

  /** A 1-D int64 constant (shapes, axes, slice bounds). */
  int64s(values: readonly number[]): string {
    return this.constant("int64", [values.length], values);
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    return this.constant("float32", [], [value]);
  }

  toBytes(): Uint8Array {
    return encodeOnnxModel({
      opset: this.opset,
      extraOpsets: [...this.domains].filter((d) => d !== "").map((domain) => ({ domain, version: 1 })),
      graph: {
        name: this.name,
        nodes: this.nodes,
        initializers: this.initializers,
        inputs: this.inputs,
        outputs: this.outputs,
      },
    });
  }

  private fresh(prefix: string): string {
    let n: string;
    do n = `${prefix}_${this.counter++}`;
    while (this.names.has(n));
    return n;
  }

  private claim(name: string): void {
    if (this.names.has(name))
      throw new ExpertMeshError(Code.INTERNAL, `graph ${this.name}: value ${name} defined twice`);
    this.names.add(name);
  }
}

function toAttributeValue(v: AttrInput): OnnxAttributeValue {
  if (typeof v === "number") return { kind: "int", value: v };
  if (typeof v === "string") return { kind: "string", value: v };
  if (isFloatAttr(v)) return { kind: "float", value: v.float };
  if (isFloatsAttr(v)) return { kind: "floats", value: v.floats };
  return { kind: "ints", value: v };
}

function isFloatAttr(v: AttrInput): v is FloatAttr {
  return typeof v === "object" && "float" in v;
}

function isFloatsAttr(v: AttrInput): v is FloatsAttr {
  return typeof v === "object" && "floats" in v;
}

function encodeElements(type: "float32" | "int64" | "int32", values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  if (type === "float32") return new Uint8Array(Float32Array.from(values).buffer);
  if (type === "int32") return new Uint8Array(Int32Array.from(values).buffer);
  const out = new BigInt64Array(n);
  for (let i = 0; i < n; i++) out[i] = BigInt(values[i] as number);
  return new Uint8Array(out.buffer);
}
