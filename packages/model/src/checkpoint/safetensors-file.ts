/**
 * One safetensors file: an 8-byte little-endian header length, a JSON header
 * (`name → {dtype, shape, data_offsets}` plus an ignored `__metadata__`), then the data;
 * offsets are relative to the end of the header. Only the header is read here — tensor
 * bytes are read later by range through the open FileHandle.
 */
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { Code, ExpertMeshError } from "@expertmesh/shared";

/** safetensors itself refuses headers over 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;

/** Bytes per element of every dtype the format defines (we decode only the float ones). */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

export interface RawTensorEntry {
  name: string;
  /** As written in the header (may be a dtype we do not decode). */
  dtype: string;
  shape: number[];
  /** Absolute position in the file. */
  byteOffset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  path: string;
  handle: FileHandle;
  size: number;
  /** Tensors in header order. */
  entries: Map<string, RawTensorEntry>;
}

function bad(path: string, message: string, cause?: unknown): ExpertMeshError {
  return new ExpertMeshError(Code.FAILED_PRECONDITION, `${path}: ${message}`, {
    details: { file: path },
    cause,
  });
}

/** Opens `path` and parses its header; the handle stays open until the caller closes it. */
export async function openSafetensorsFile(path: string): Promise<SafetensorsFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw bad(path, `cannot open safetensors file (${(err as NodeJS.ErrnoException).code ?? "error"})`, err);
  }
  try {
    return { path, handle, ...(await readHeader(path, handle)) };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

async function readExactly(handle: FileHandle, buf: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function readHeader(
  path: string,
  handle: FileHandle,
): Promise<{ size: number; entries: Map<string, RawTensorEntry> }> {
  const size = (await handle.stat()).size;
  if (size < 8)
    throw bad(path, `truncated safetensors file: ${size} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  await readExactly(handle, lenBuf, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw bad(
      path,
      `header length ${headerLen} is absurd (limit ${MAX_HEADER_BYTES} bytes): not a safetensors file?`,
    );
  }
  const n = Number(headerLen);
  if (8 + n > size)
    throw bad(path, `truncated safetensors file: header needs ${8 + n} bytes, file has ${size}`);
  const headerBuf = Buffer.alloc(n);
  await readExactly(handle, headerBuf, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString("utf8"));
  } catch (err) {
    throw bad(path, "safetensors header is not valid JSON", err);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    throw bad(path, "safetensors header is not a JSON object");

  const dataStart = 8 + n;
  const entries = new Map<string, RawTensorEntry>();
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") continue;
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    const shape = v?.shape;
    const offsets = v?.data_offsets;
    if (
      typeof v?.dtype !== "string" ||
      !Array.isArray(shape) ||
      !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0) ||
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
    ) {
      throw bad(path, `tensor "${name}": malformed header entry ${JSON.stringify(value)}`);
    }
    const [begin, end] = offsets as [number, number];
    const dims = shape as number[];
    if (end < begin) throw bad(path, `tensor "${name}": data_offsets [${begin}, ${end}] end before begin`);
    const elementBytes = SAFETENSORS_DTYPE_BYTES[v.dtype];
    if (elementBytes !== undefined) {
      const want = dims.reduce((a, b) => a * b, 1) * elementBytes;
      if (end - begin !== want) {
        throw bad(
          path,
          `tensor "${name}": ${end - begin} bytes for ${v.dtype} [${dims.join(", ")}], expected ${want}`,
        );
      }
    }
    if (dataStart + end > size) {
      throw bad(
        path,
        `truncated safetensors file: tensor "${name}" ends at byte ${dataStart + end}, file has ${size}`,
      );
    }
    entries.set(name, {
      name,
      dtype: v.dtype,
      shape: dims,
      byteOffset: dataStart + begin,
      byteLength: end - begin,
    });
  }
  return { size, entries };
}

/** Reads `length` bytes at `position` into `buf` (offset 0), failing clearly on a short read. */
export async function readRange(
  file: SafetensorsFile,
  tensor: string,
  buf: Uint8Array,
  length: number,
  position: number,
): Promise<void> {
  const got = await readExactly(file.handle, buf.subarray(0, length), position);
  if (got !== length) {
    throw bad(
      file.path,
      `truncated safetensors file: tensor "${tensor}" short read (${got} of ${length} bytes at ${position})`,
    );
  }
}
