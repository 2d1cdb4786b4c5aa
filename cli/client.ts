import net from "node:net";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService, NodeStateService } from "../proto/gen/plexd/node/v1/node_pb.js";
import { exitCodes } from "./exit-codes.js";

// The CLI's only way into the agent: gRPC over the node API unix socket (docs/node-api.md).
// Every unary call carries a 10 s client timeout.

export const clientTimeoutMs = 10_000;

export interface NodeClient {
  agent: Client<typeof AgentService>;
  state: Client<typeof NodeStateService>;
}

export function createNodeClient(socketPath: string): NodeClient {
  const transport = createGrpcTransport({
    baseUrl: "http://localhost",
    nodeOptions: { createConnection: () => net.connect(socketPath) },
    defaultTimeoutMs: clientTimeoutMs,
  });
  return { agent: createClient(AgentService, transport), state: createClient(NodeStateService, transport) };
}

const unreachableErrno = new Set(["ENOENT", "ECONNREFUSED", "ENOTSOCK", "ECONNRESET", "EPIPE"]);

function errnoOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 6; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** True when the socket could not be reached at all (missing, refused, not a socket). */
export function isUnreachable(err: unknown): boolean {
  const errno = errnoOf(err);
  return errno !== undefined && unreachableErrno.has(errno);
}

/** Exit code for a failed call (docs/operations.md). */
export function exitCodeOf(err: unknown): number {
  const errno = errnoOf(err);
  if (errno === "EACCES" || errno === "EPERM") return exitCodes.permissionDenied;
  if (isUnreachable(err)) return exitCodes.agentUnreachable;
  const ce = ConnectError.from(err);
  switch (ce.code) {
    case Code.NotFound:
      return exitCodes.notFound;
    case Code.PermissionDenied:
    case Code.Unauthenticated:
      return exitCodes.permissionDenied;
    case Code.Aborted:
      return exitCodes.conflict;
    case Code.Unavailable:
      return exitCodes.controlPlaneUnavailable;
    case Code.InvalidArgument:
      return exitCodes.usage;
    default:
      return exitCodes.error;
  }
}

/** One line for stderr. */
export function describeError(err: unknown, socketPath: string): string {
  const errno = errnoOf(err);
  if (errno === "EACCES" || errno === "EPERM") return `plexd: permission denied opening ${socketPath} (are you in group plexd?)`;
  if (isUnreachable(err)) return `plexd: agent not reachable at ${socketPath} (${errno}); is plexd running?`;
  const ce = ConnectError.from(err);
  const name = Code[ce.code].replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`));
  return `plexd: ${name}: ${ce.rawMessage}`;
}
