import { toBinary } from "@bufbuild/protobuf";
import type { DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ReflectionService } from "@grpc/reflection";

/** The proto-loader style package definition @grpc/reflection is built from. */
export type ReflectionPackageDefinition = ConstructorParameters<typeof ReflectionService>[0];

/** The serialized FileDescriptorProto of a file and of every file it imports, transitively. */
export function fileDescriptorClosure(files: Iterable<DescFile>): Map<string, Buffer> {
  const encoded = new Map<string, Buffer>();
  const visit = (file: DescFile): void => {
    if (encoded.has(file.proto.name)) return;
    const bytes = toBinary(FileDescriptorProtoSchema, file.proto);
    encoded.set(file.proto.name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    file.dependencies.forEach(visit);
  };
  for (const file of files) visit(file);
  return encoded;
}

/**
 * A package definition, as @grpc/proto-loader would build it, for the given protobuf-es files
 * (and their imports) plus already-serialized descriptors from elsewhere (grpc.health.v1).
 * Like proto-loader's, every entry carries the whole set of file descriptors; @grpc/reflection
 * indexes services and symbols from them, so reflection v1 and v1alpha list every service of
 * these files and serve their descriptors.
 */
export function reflectionPackageDefinition(
  files: Iterable<DescFile>,
  extraFileDescriptorProtos: readonly Buffer[] = [],
): ReflectionPackageDefinition {
  const closure = [...files];
  const descriptors = [...fileDescriptorClosure(closure).values(), ...extraFileDescriptorProtos];
  const definition: ReflectionPackageDefinition = {};
  for (const file of closure) {
    for (const message of file.messages) {
      definition[message.typeName] = {
        format: "Protocol Buffer 3 DescriptorProto",
        type: message.proto,
        fileDescriptorProtos: descriptors,
      };
    }
    for (const enumeration of file.enums) {
      definition[enumeration.typeName] = {
        format: "Protocol Buffer 3 EnumDescriptorProto",
        type: enumeration.proto,
        fileDescriptorProtos: descriptors,
      };
    }
  }
  return definition;
}
