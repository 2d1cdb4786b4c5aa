import { createRegistry, toBinary, type DescFile, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { ServerReflection, type ServerReflectionRequest, type ServerReflectionResponseSchema } from "../../proto/gen/grpc/reflection/v1/reflection_pb.js";

// gRPC server reflection (grpc.reflection.v1) from the generated descriptors, so generic
// tools (`buf curl --list-methods`, grpcurl) can discover the node API without the .proto.
// connect-node has no reflection of its own; the protocol is small enough to answer here.

export function addReflection(router: ConnectRouter, services: DescService[]): void {
  const files = new Map<string, DescFile>();
  const collect = (f: DescFile): void => {
    if (files.has(f.name)) return;
    files.set(f.name, f);
    for (const d of f.dependencies) collect(d);
  };
  const all = [...services, ServerReflection];
  for (const s of all) collect(s.file);
  const registry = createRegistry(...files.values());

  /** The file and everything it imports, file first (clients resolve in this order). */
  const closure = (f: DescFile): Uint8Array[] => {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const walk = (x: DescFile): void => {
      if (seen.has(x.name)) return;
      seen.add(x.name);
      out.push(toBinary(FileDescriptorProtoSchema, x.proto));
      for (const d of x.dependencies) walk(d);
    };
    walk(f);
    return out;
  };

  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const direct = registry.get(symbol);
    if (direct !== undefined && "file" in direct) return direct.file;
    // A method or field name: look up its parent.
    const parent = registry.get(symbol.slice(0, Math.max(0, symbol.lastIndexOf("."))));
    return parent !== undefined && "file" in parent ? parent.file : undefined;
  };

  const answer = (req: ServerReflectionRequest): MessageInitShape<typeof ServerReflectionResponseSchema> => {
    const base = { validHost: req.host, originalRequest: req };
    const notFound = (what: string): MessageInitShape<typeof ServerReflectionResponseSchema> => ({
      ...base,
      messageResponse: { case: "errorResponse", value: { errorCode: 5, errorMessage: `${what} not found` } },
    });
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return { ...base, messageResponse: { case: "listServicesResponse", value: { service: all.map((s) => ({ name: s.typeName })) } } };
      case "fileByFilename": {
        const f = files.get(r.value);
        return f === undefined ? notFound(r.value) : { ...base, messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: closure(f) } } };
      }
      case "fileContainingSymbol": {
        const f = fileOfSymbol(r.value);
        return f === undefined ? notFound(r.value) : { ...base, messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: closure(f) } } };
      }
      case "allExtensionNumbersOfType":
        return { ...base, messageResponse: { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: [] } } };
      default:
        return { ...base, messageResponse: { case: "errorResponse", value: { errorCode: 12, errorMessage: "not implemented" } } };
    }
  };

  router.rpc(ServerReflection.method.serverReflectionInfo, async function* (requests) {
    for await (const req of requests) yield answer(req);
  });
}
