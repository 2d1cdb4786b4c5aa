import { chmod, lstat, unlink } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { create, type DescMessage, type DescService, type MessageShape } from "@bufbuild/protobuf";
import { ConnectError, createContextKey, createContextValues, type Code, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { PlexdError, grpcStatusOf, isCancellation } from "../../proto/lib/errors.js";
import { AgentService, NodeStateService } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { Health } from "../../proto/gen/grpc/health/v1/health_pb.js";
import type { Logger } from "../util/log.js";
import { authorize, classifyToken, defaultAccessPolicy, type AccessPolicy, type Caller, type PeerCred } from "./access.js";
import type { NodeApiBackend } from "./backend.js";
import { nativePeerCredReader, type PeerCredReader } from "../../proto/lib/peercred.js";
import { addReflection } from "./reflection.js";
import { jsonWriteOptions, restHandler, sendError } from "./rest.js";
import { buildOps, type Op, type UnaryOp } from "./services.js";
import { sniffProtocol } from "./sniff.js";
import type { NodeState } from "./state/node-state.js";

// The agent's local API server (docs/node-api.md): NodeStateService and AgentService over
// gRPC, gRPC-Web and Connect on a unix socket (and optionally loopback TCP with a bearer
// token), with REST routes and gRPC reflection on the same listener.

export interface NodeApiOptions {
  socketPath: string;
  backend: NodeApiBackend;
  /** NodeStateService's data; undefined before registration (those calls answer unavailable). */
  state?: NodeState | undefined;
  log: Logger;
  signal: AbortSignal;
  /** Optional TCP listener (node_api.http): `host:port`, reader token, optional secrets token. */
  http?: { listen: string; token: string; secretsToken?: string | undefined } | undefined;
  /** Defaults to SO_PEERCRED through the native addon. */
  peerCredentials?: PeerCredReader;
  /** Defaults to uid 0 / plexd user / plexd-secrets group from the host's account files. */
  accessPolicy?: AccessPolicy;
  /** WatchStatus rate limit (default 500 ms, i.e. at most 2 per second). */
  statusIntervalMs?: number;
  /** Another service table instead of the node API's (the actions socket serves ActionService only). */
  ops?: Op[];
  /** Services listed by reflection with `ops`. */
  reflect?: DescService[];
  /** Socket file mode (default 0660; the actions socket is 0666: its calls authorize themselves). */
  socketMode?: number;
}

export interface NodeApiServer {
  /** The bound TCP address when `http` was given (port 0 picks one). */
  readonly tcpAddress: net.AddressInfo | undefined;
  close(): Promise<void>;
}

const kConn = Symbol("plexd.nodeapi.conn");
type ConnInfo = { transport: "unix"; cred: PeerCred | undefined } | { transport: "tcp" };
type Tagged = { [kConn]?: ConnInfo };

const callerKey = createContextKey<Caller | undefined>(undefined, { description: "node API caller" });

function connOf(req: http.IncomingMessage | http2.Http2ServerRequest): ConnInfo | undefined {
  // Http2ServerRequest.socket is a proxy that forwards property reads to the real socket.
  return (req.socket as unknown as Tagged)[kConn];
}

function callerOf(req: http.IncomingMessage | http2.Http2ServerRequest, tokens: NodeApiOptions["http"]): Caller {
  const conn = connOf(req);
  if (conn?.transport === "unix") return { transport: "unix", cred: conn.cred };
  const auth = req.headers.authorization;
  return { transport: "tcp", token: tokens === undefined ? "wrong" : classifyToken(Array.isArray(auth) ? auth[0] : auth, tokens) };
}

function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = PlexdError.from(err);
  return new ConnectError(e.message, grpcStatusOf(e.code) as Code);
}

function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  if (m === null) throw new PlexdError("invalid_argument", `node_api.http.listen must be host:port, got ${listen}`);
  return { host: m[1] ?? "127.0.0.1", port: Number(m[2]) };
}

/** Removes a socket file left by a dead process; refuses when a live server still answers. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (st === undefined) return;
  if (!st.isSocket()) throw new PlexdError("already_exists", `${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
  if (alive) throw new PlexdError("already_exists", `another process is serving ${path}`);
  await unlink(path);
}

export async function startNodeApi(opts: NodeApiOptions): Promise<NodeApiServer> {
  const { log } = opts;
  const policy = opts.accessPolicy ?? defaultAccessPolicy();
  const readCred = opts.peerCredentials ?? nativePeerCredReader();
  const ops: Op[] = opts.ops ?? buildOps({ backend: opts.backend, state: opts.state, ...(opts.statusIntervalMs === undefined ? {} : { statusIntervalMs: opts.statusIntervalMs }) });

  // Unary calls still being answered: close() lets them finish, so the answer to the call that
  // stops the agent (Deregister) still reaches its caller.
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const invokeUnary = async (op: UnaryOp, req: MessageShape<DescMessage>, caller: Caller, signal: AbortSignal): Promise<MessageShape<DescMessage>> => {
    inFlight++;
    try {
      await authorize(caller, op.access, policy);
      const out = await op.fn(req, { signal, caller });
      return create(op.method.output, out);
    } finally {
      // The answer is written after this returns; count the call done a moment later.
      setTimeout(() => {
        inFlight--;
        if (inFlight === 0) drained?.();
      }, 50).unref();
    }
  };

  const routes = (router: ConnectRouter): void => {
    for (const op of ops) {
      const callerIn = (ctx: HandlerContext): Caller => ctx.values.get(callerKey) ?? { transport: "unix", cred: undefined };
      if (op.kind === "unary") {
        router.rpc(op.method as never, (async (req: MessageShape<DescMessage>, ctx: HandlerContext) => {
          try {
            return await invokeUnary(op, req, callerIn(ctx), ctx.signal);
          } catch (err) {
            throw toConnectError(err);
          }
        }) as never);
      } else {
        router.rpc(op.method as never, async function* (req: MessageShape<DescMessage>, ctx: HandlerContext) {
          try {
            await authorize(callerIn(ctx), op.access, policy);
            for await (const item of op.fn(req, { signal: ctx.signal, caller: callerIn(ctx), headers: ctx.requestHeader })) yield item;
          } catch (err) {
            if (ctx.signal.aborted || isCancellation(err)) return;
            throw toConnectError(err);
          }
        } as never);
      }
    }
    addReflection(router, opts.reflect ?? [NodeStateService, AgentService, Health]);
  };

  const rest = restHandler(ops, (op, msg, httpReq, signal) => invokeUnary(op, msg, callerOf(httpReq, opts.http), signal));
  const handler = connectNodeAdapter({
    routes,
    jsonOptions: { ...jsonWriteOptions, ignoreUnknownFields: false },
    contextValues: (req) => createContextValues().set(callerKey, callerOf(req, opts.http)),
    fallback: (req, res) => rest(req, res as unknown as Parameters<typeof rest>[1]),
  });

  const h1 = http.createServer((req, res) => {
    try {
      handler(req, res);
    } catch (err) {
      sendError(res, err);
    }
  });
  const h2 = http2.createServer(handler);
  h2.on("sessionError", (err) => log.debug({ err: err.message }, "node API HTTP/2 session error"));
  const sockets = new Set<net.Socket>();

  const accept = (conn: ConnInfo) => (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    (socket as unknown as Tagged)[kConn] = conn.transport === "unix" ? { transport: "unix", cred: readCred(socket) } : conn;
    sniffProtocol(socket, (proto) => (proto === "h2" ? h2 : h1).emit("connection", socket));
  };

  // The socket is created 0660 from the start: the umask applies at bind time, so there is
  // no moment when it is world-accessible; chmod afterwards pins the mode regardless.
  await removeStaleSocket(opts.socketPath);
  const unixServer = net.createServer(accept({ transport: "unix", cred: undefined }));
  const mode = opts.socketMode ?? 0o660;
  const oldMask = process.umask(0o777 & ~mode);
  try {
    await new Promise<void>((resolve, reject) => {
      unixServer.once("error", reject);
      unixServer.listen(opts.socketPath, () => {
        unixServer.off("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  await chmod(opts.socketPath, mode);

  let tcpServer: net.Server | undefined;
  if (opts.http !== undefined) {
    const { host, port } = parseListen(opts.http.listen);
    if (!["127.0.0.1", "::1", "localhost"].includes(host) && !host.startsWith("127.")) {
      log.warn({ listen: opts.http.listen }, "node API TCP listener is not on loopback");
    }
    tcpServer = net.createServer(accept({ transport: "tcp" }));
    const srv = tcpServer;
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(port, host, () => {
        srv.off("error", reject);
        resolve();
      });
    });
  }
  log.info({ socket: opts.socketPath, tcp: opts.http?.listen }, "node API listening");

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          drained = resolve;
          setTimeout(resolve, 5000).unref();
        });
      }
      const done = Promise.all(
        [unixServer, tcpServer].filter((s): s is net.Server => s !== undefined).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      );
      for (const s of sockets) s.destroy();
      h2.close();
      h1.close();
      await done;
      await unlink(opts.socketPath).catch(() => undefined);
    })());
  opts.signal.addEventListener("abort", () => void close(), { once: true });
  const addr = tcpServer?.address();
  return { tcpAddress: typeof addr === "object" && addr !== null ? addr : undefined, close };
}
