/**
 * A minimal ONNX ModelProto encoder (the subset our generated graphs use), written on
 * protobuf-es' wire writer so that no onnx.proto code generation is needed.
 * Field numbers are those of onnx/onnx.proto (proto2; repeated scalars are written unpacked,
 * which every proto2 parser accepts).
 */
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

/** TensorProto.DataType values we use. */
export enum OnnxDataType {
  FLOAT = 1,
  INT32 = 6,
  INT64 = 7,
  BOOL = 9,
}

/** AttributeProto.AttributeType values. */
enum AttributeType {
  FLOAT = 1,
  INT = 2,
  STRING = 3,
  TENSOR = 4,
  FLOATS = 6,
  INTS = 7,
}

export interface OnnxTensor {
  name: string;
  dataType: OnnxDataType;
  dims: readonly number[];
  /** Little-endian element bytes (TensorProto.raw_data). */
  rawData: Uint8Array;
}

export type OnnxAttributeValue =
  | { kind: "float"; value: number }
  | { kind: "int"; value: number }
  | { kind: "string"; value: string }
  | { kind: "tensor"; value: OnnxTensor }
  | { kind: "floats"; value: readonly number[] }
  | { kind: "ints"; value: readonly number[] };

export interface OnnxAttribute {
  name: string;
  value: OnnxAttributeValue;
}

export interface OnnxNode {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name: string;
  domain?: string;
  attributes: readonly OnnxAttribute[];
}

/** A dimension: a fixed size or a symbolic name (dim_param). */
export type OnnxDim = number | string;

export interface OnnxValueInfo {
  name: string;
  dataType: OnnxDataType;
  dims: readonly OnnxDim[];
}

export interface OnnxGraph {
  name: string;
  nodes: readonly OnnxNode[];
  initializers: readonly OnnxTensor[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
}

export interface OnnxModel {
  graph: OnnxGraph;
  /** Default-domain opset version. */
  opset: number;
  /** Extra opsets, e.g. { domain: "com.microsoft", version: 1 }. */
  extraOpsets?: readonly { domain: string; version: number }[];
  producerName?: string;
}

const IR_VERSION = 8;

export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.Varint).int64(IR_VERSION);
  w.tag(2, WireType.LengthDelimited).string(model.producerName ?? "expertmesh");
  w.tag(7, WireType.LengthDelimited).fork();
  writeGraph(w, model.graph);
  w.join();
  const opsets = [{ domain: "", version: model.opset }, ...(model.extraOpsets ?? [])];
  for (const o of opsets) {
    w.tag(8, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).string(o.domain);
    w.tag(2, WireType.Varint).int64(o.version);
    w.join();
  }
  return w.finish();
}

function writeGraph(w: BinaryWriter, g: OnnxGraph): void {
  for (const n of g.nodes) {
    w.tag(1, WireType.LengthDelimited).fork();
    writeNode(w, n);
    w.join();
  }
  w.tag(2, WireType.LengthDelimited).string(g.name);
  for (const t of g.initializers) {
    w.tag(5, WireType.LengthDelimited).fork();
    writeTensor(w, t);
    w.join();
  }
  for (const v of g.inputs) {
    w.tag(11, WireType.LengthDelimited).fork();
    writeValueInfo(w, v);
    w.join();
  }
  for (const v of g.outputs) {
    w.tag(12, WireType.LengthDelimited).fork();
    writeValueInfo(w, v);
    w.join();
  }
}

function writeNode(w: BinaryWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.tag(1, WireType.LengthDelimited).string(i);
  for (const o of n.outputs) w.tag(2, WireType.LengthDelimited).string(o);
  w.tag(3, WireType.LengthDelimited).string(n.name);
  w.tag(4, WireType.LengthDelimited).string(n.opType);
  for (const a of n.attributes) {
    w.tag(5, WireType.LengthDelimited).fork();
    writeAttribute(w, a);
    w.join();
  }
  if (n.domain !== undefined && n.domain !== "") w.tag(7, WireType.LengthDelimited).string(n.domain);
}

function writeAttribute(w: BinaryWriter, a: OnnxAttribute): void {
  w.tag(1, WireType.LengthDelimited).string(a.name);
  const v = a.value;
  switch (v.kind) {
    case "float":
      w.tag(2, WireType.Bit32).float(v.value);
      w.tag(20, WireType.Varint).int32(AttributeType.FLOAT);
      break;
    case "int":
      w.tag(3, WireType.Varint).int64(v.value);
      w.tag(20, WireType.Varint).int32(AttributeType.INT);
      break;
    case "string":
      w.tag(4, WireType.LengthDelimited).bytes(new TextEncoder().encode(v.value));
      w.tag(20, WireType.Varint).int32(AttributeType.STRING);
      break;
    case "tensor":
      w.tag(5, WireType.LengthDelimited).fork();
      writeTensor(w, v.value);
      w.join();
      w.tag(20, WireType.Varint).int32(AttributeType.TENSOR);
      break;
    case "floats":
      for (const f of v.value) w.tag(7, WireType.Bit32).float(f);
      w.tag(20, WireType.Varint).int32(AttributeType.FLOATS);
      break;
    case "ints":
      for (const i of v.value) w.tag(8, WireType.Varint).int64(i);
      w.tag(20, WireType.Varint).int32(AttributeType.INTS);
      break;
  }
}

function writeTensor(w: BinaryWriter, t: OnnxTensor): void {
  for (const d of t.dims) w.tag(1, WireType.Varint).int64(d);
  w.tag(2, WireType.Varint).int32(t.dataType);
  w.tag(8, WireType.LengthDelimited).string(t.name);
  w.tag(9, WireType.LengthDelimited).bytes(t.rawData);
}

function writeValueInfo(w: BinaryWriter, v: OnnxValueInfo): void {
  w.tag(1, WireType.LengthDelimited).string(v.name);
  w.tag(2, WireType.LengthDelimited).fork(); // TypeProto
  w.tag(1, WireType.LengthDelimited).fork(); // TypeProto.Tensor
  w.tag(1, WireType.Varint).int32(v.dataType);
  w.tag(2, WireType.LengthDelimited).fork(); // TensorShapeProto
  for (const d of v.dims) {
    w.tag(1, WireType.LengthDelimited).fork(); // Dimension
    if (typeof d === "number") w.tag(1, WireType.Varint).int64(d);
    else w.tag(2, WireType.LengthDelimited).string(d);
    w.join();
  }
  w.join();
  w.join();
  w.join();
}
