/**
 * Streaming safetensors writer: the header (every tensor's dtype, shape and byte range) is
 * computed up front from the specs, then tensors are written one at a time in spec order,
 * so a file of any size is produced with one tensor in memory.
 */
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { Code, ExpertMeshError } from "@expertmesh/shared";
import { SAFETENSORS_DTYPE_BYTES } from "../checkpoint/safetensors-file.ts";

export interface TensorSpec {
  name: string;
  /** A safetensors dtype name (F32, BF16, F8_E4M3, …). */
  dtype: string;
  shape: readonly number[];
}

export function tensorByteLength(spec: TensorSpec): number {
  const bytes = SAFETENSORS_DTYPE_BYTES[spec.dtype];
  if (bytes === undefined)
    throw new ExpertMeshError(Code.INVALID_ARGUMENT, `unknown safetensors dtype ${spec.dtype}`);
  return spec.shape.reduce((a, b) => a * b, 1) * bytes;
}

/** 8-byte length + JSON header padded with spaces to a multiple of 8 (as the reference writer does). */
export function encodeSafetensorsHeader(
  specs: readonly TensorSpec[],
  metadata: Readonly<Record<string, string>>,
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const s of specs) {
    const n = tensorByteLength(s);
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(8 + json.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  return out;
}

export class SafetensorsWriter {
  private next = 0;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly specs: readonly TensorSpec[],
    private position: number,
  ) {}

  static async create(
    path: string,
    specs: readonly TensorSpec[],
    metadata: Readonly<Record<string, string>> = {},
  ): Promise<SafetensorsWriter> {
    const header = encodeSafetensorsHeader(specs, metadata);
    const handle = await open(path, "w");
    try {
      await writeAll(handle, header, 0);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return new SafetensorsWriter(path, handle, specs, header.length);
  }

  /** Writes the next tensor's raw little-endian bytes (must follow spec order). */
  async write(name: string, bytes: Uint8Array): Promise<void> {
    const spec = this.specs[this.next];
    if (spec === undefined || spec.name !== name) {
      throw new ExpertMeshError(
        Code.INTERNAL,
        `${this.path}: wrote "${name}" but the next tensor is ${spec === undefined ? "none" : `"${spec.name}"`}`,
      );
    }
    const want = tensorByteLength(spec);
    if (bytes.length !== want)
      throw new ExpertMeshError(
        Code.INTERNAL,
        `${this.path}: "${name}" has ${bytes.length} bytes, expected ${want}`,
      );
    await writeAll(this.handle, bytes, this.position);
    this.position += bytes.length;
    this.next++;
  }

  async close(): Promise<void> {
    await this.handle.close();
    if (this.next !== this.specs.length) {
      throw new ExpertMeshError(
        Code.INTERNAL,
        `${this.path}: closed after ${this.next} of ${this.specs.length} tensors`,
      );
    }
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
