#!/usr/bin/python3
"""An independent gRPC client for the adapter's tests: raw calls, hand-serialized bytes.

Usage: /usr/bin/python3 grpc_probe.py HOST:PORT SERVICE SYMBOL

Calls grpc.health.v1.Health/Check for "" and SERVICE, then reflection list_services and
file_containing_symbol(SYMBOL) over both grpc.reflection.v1alpha and grpc.reflection.v1,
and prints one JSON object. Only grpcio is used for transport; every message is encoded and
decoded here by hand (descriptor_pb2 only reads the returned FileDescriptorProtos).
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

TIMEOUT_S = 10


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def read_varint(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def parse(data):
    """Top-level fields of a message: {field number: [values]} (varints as int, others as bytes)."""
    fields = {}
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
        elif wire_type == 2:
            size, pos = read_varint(data, pos)
            value = data[pos : pos + size]
            pos += size
        elif wire_type == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        fields.setdefault(field, []).append(value)
    return fields


def health_check(channel, service):
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    # HealthCheckRequest { string service = 1; }
    request = length_delimited(1, service.encode()) if service else b""
    try:
        raw = check(request, timeout=TIMEOUT_S)
    except grpc.RpcError as error:  # e.g. NOT_FOUND for a service the server does not know
        return error.code().name
    # HealthCheckResponse { ServingStatus status = 1; } (absent = 0 = UNKNOWN)
    return parse(raw).get(1, [0])[0]


def methods_of(files, symbol):
    """Builds the returned files into a descriptor pool (fails if an import is missing) and
    returns the methods of `symbol` when it is a service, as "Name:InputType:client,server"."""
    pool = descriptor_pool.DescriptorPool()
    pending = {f.name: f for f in files}
    while pending:
        ready = [f for f in pending.values() if all(d not in pending for d in f.dependency)]
        if not ready:
            raise ValueError(f"unresolvable imports among {sorted(pending)}")
        for f in ready:
            pool.Add(f)
            del pending[f.name]
    try:
        service = pool.FindServiceByName(symbol)
    except KeyError:
        return []
    return [
        f"{m.name}:{m.input_type.full_name}:{int(m.client_streaming)},{int(m.server_streaming)}"
        for m in service.methods
    ]


def reflection(channel, version, symbol):
    info = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo")
    # ServerReflectionRequest { string host = 1; string file_containing_symbol = 4; string list_services = 7; }
    requests = [length_delimited(7, b"*"), length_delimited(4, symbol.encode())]
    result = {}
    for raw in info(iter(requests), timeout=TIMEOUT_S):
        response = parse(raw)
        # ServerReflectionResponse: 4 file_descriptor_response, 6 list_services_response, 7 error_response
        if 6 in response:
            # ListServiceResponse { repeated ServiceResponse service = 1 } / ServiceResponse { string name = 1 }
            services = parse(response[6][0]).get(1, [])
            result["services"] = sorted(parse(s)[1][0].decode() for s in services)
        elif 4 in response:
            # FileDescriptorResponse { repeated bytes file_descriptor_proto = 1 }
            files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in parse(response[4][0]).get(1, [])]
            result["file_containing_symbol"] = {
                "files": [f.name for f in files],
                "services": sorted(f"{f.package}.{s.name}" for f in files for s in f.service),
                "methods": methods_of(files, symbol),
            }
        elif 7 in response:
            error = parse(response[7][0])
            result.setdefault("errors", []).append(
                {"code": error.get(1, [0])[0], "message": error.get(2, [b""])[0].decode()}
            )
    return result


def main():
    address, service, symbol = sys.argv[1:4]
    with grpc.insecure_channel(address) as channel:
        out = {
            "health": {name: health_check(channel, name) for name in ("", service)},
            "reflection": {v: reflection(channel, v, symbol) for v in ("v1alpha", "v1")},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
