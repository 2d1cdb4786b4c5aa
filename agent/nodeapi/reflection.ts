import { EventEmitter } from "node:events";
import { fromBinary, toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { ReflectionService } from "@grpc/reflection";
import { ServerReflection, ServerReflectionRequestSchema, ServerReflectionResponseSchema } from "../../proto/gen/grpc/reflection/v1/reflection_pb.js";

// gRPC server reflection (grpc.reflection.v1), so generic tools (`buf curl --list-methods`,
// grpcurl) can discover the node API without the .proto. The answers come from
// @grpc/reflection; it installs itself into a grpc-js server (`addToServer`), while the node API
// is a connect-node server, so a stand-in takes the service it adds and this file carries each
// request to it and its answers back, as bytes through grpc-js's own (de)serializers.
// @grpc/reflection (with protobufjs and proto-loader under it) is loaded and built on the first
// reflection request: generic tools are rare callers, and the agent should not hold that
// machinery for its whole life (docs/testing.md#performance-targets, agent RSS).

type PackageDefinition = ConstructorParameters<typeof ReflectionService>[0];

/** The descriptors of the served files and everything they import, as @grpc/proto-loader would give them. */
function packageDefinition(services: DescService[]): PackageDefinition {
  const files = new Map<string, DescFile>();
  const collect = (f: DescFile): void => {
    if (files.has(f.name)) return;
    files.set(f.name, f);
    for (const d of f.dependencies) collect(d);
  };
  for (const s of services) collect(s.file);
  const fileDescriptorProtos = [...files.values()].map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  return { "plexd.node.api": { format: "Protocol Buffer 3 FileDescriptorProto", type: {}, fileDescriptorProtos } } as unknown as PackageDefinition;
}

interface Captured {
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

interface V1 {
  method: NonNullable<ServiceDefinition["ServerReflectionInfo"]>;
  handler: (stream: EventEmitter) => void;
}

async function buildV1(services: DescService[]): Promise<V1> {
  const { ReflectionService: Service } = (await import("@grpc/reflection")) as { ReflectionService: typeof ReflectionService };
  const reflection = new Service(packageDefinition(services), { services: services.map((s) => s.typeName) });
  const added: Captured[] = [];
  reflection.addToServer({ addService: (definition, implementation) => void added.push({ definition, implementation }) });
  const v1 = added.find((a) => a.definition.ServerReflectionInfo?.path === `/${ServerReflection.typeName}/ServerReflectionInfo`);
  const method = v1?.definition.ServerReflectionInfo;
  const handler = v1?.implementation.ServerReflectionInfo as ((stream: EventEmitter) => void) | undefined;
  if (method === undefined || handler === undefined) throw new Error("@grpc/reflection did not add grpc.reflection.v1");
  return { method, handler };
}

export function addReflection(router: ConnectRouter, served: DescService[]): void {
  const services = [...served, ServerReflection];
  let v1: Promise<V1> | undefined;

  router.rpc(ServerReflection.method.serverReflectionInfo, async function* (requests) {
    v1 ??= buildV1(services).catch((err: unknown) => {
      v1 = undefined; // built again by the next request
      throw err;
    });
    const { method, handler } = await v1;
    // The grpc-js call the handler expects: requests arrive as 'data', answers leave by write().
    const answers: Buffer[] = [];
    const call = Object.assign(new EventEmitter(), {
      write: (answer: unknown) => answers.push(method.responseSerialize(answer)) > 0,
      end: () => undefined,
    });
    handler(call);
    for await (const req of requests) {
      call.emit("data", method.requestDeserialize(Buffer.from(toBinary(ServerReflectionRequestSchema, req))));
      for (let a = answers.shift(); a !== undefined; a = answers.shift()) yield fromBinary(ServerReflectionResponseSchema, a);
    }
    call.emit("end");
  });
}
