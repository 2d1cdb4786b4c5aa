// Binds @bufbuild/protobuf generated services to @grpc/grpc-js. grpc-js wants a
// ServiceDefinition with (de)serialisers; the generated descriptors have everything
// needed, so no second code generator (and no proto-loader at run time) is required.
import type { DescMessage, DescMethod, DescService, MessageShape } from "@bufbuild/protobuf";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";

function methodDefinition(service: DescService, method: DescMethod, rawRequests: boolean): grpc.MethodDefinition<unknown, unknown> {
  const input = method.input as DescMessage;
  const output = method.output as DescMessage;
  return {
    path: `/${service.typeName}/${method.name}`,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    // Bytes are a request the caller encoded itself (agent/mesh/target.ts): sent as they are.
    requestSerialize: (value: unknown) => (value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : Buffer.from(toBinary(input, value as MessageShape<DescMessage>))),
    requestDeserialize: rawRequests ? (bytes: Buffer) => bytes : (bytes: Buffer) => fromBinary(input, bytes),
    responseSerialize: (value: unknown) => Buffer.from(toBinary(output, value as MessageShape<DescMessage>)),
    responseDeserialize: (bytes: Buffer) => fromBinary(output, bytes),
    originalName: method.localName,
  };
}

/**
 * grpc-js service definition keyed by the generated method's localName (camelCase). With
 * `rawRequests` a server gets each request as its bytes, to decode when it chooses to.
 */
export function grpcServiceDefinition(service: DescService, opts: { rawRequests?: boolean } = {}): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) def[method.localName] = methodDefinition(service, method, opts.rawRequests ?? false);
  return def;
}
