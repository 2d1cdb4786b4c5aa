import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, type ServiceError } from "@grpc/grpc-js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../../proto/gen/grpc/health/v1/health_pb.js";

// What grpc-health-probe does, with @grpc/grpc-js as the client (not the node API's own
// Connect stack): one grpc.health.v1.Health/Check over the unix socket. Resolves with the
// serving status name, or the gRPC error code name when the call fails.

export async function grpcHealthCheck(socketPath: string, service = "", timeoutMs = 10_000): Promise<string> {
  const client = new Client(`unix://${socketPath}`, credentials.createInsecure());
  try {
    return await new Promise<string>((resolve) => {
      client.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (req: { service: string }) => Buffer.from(toBinary(HealthCheckRequestSchema, { $typeName: "grpc.health.v1.HealthCheckRequest", ...req })),
        (buf: Buffer) => fromBinary(HealthCheckResponseSchema, buf),
        { service },
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, res?: { status: HealthCheckResponse_ServingStatus }) => {
          if (err !== null) resolve(`error ${err.code}`);
          else resolve(HealthCheckResponse_ServingStatus[res?.status ?? 0] ?? "UNKNOWN");
        },
      );
    });
  } finally {
    client.close();
  }
}
