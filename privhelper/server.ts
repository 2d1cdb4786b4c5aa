// The socket and who may use it. Directory root:<group> 0750 and socket root:<group> 0660 are the first gate (EACCES from connect(2)
// outside the group). privhelper accepts connections itself, reads each one's SO_PEERCRED and hands it to grpc-js
// (createConnectionInjector); a call is served only for root and the agent's user, and refused before its request is read.
import { chmod, chown, lstat, mkdir, unlink } from "node:fs/promises";
import { connect, createServer, type Socket } from "node:net";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { PlexdError } from "../proto/lib/errors.js";
import type { PeerCred } from "../proto/lib/peercred.js";
import type { Logger } from "./log.js";

/** `allowedUids`: served besides root (the agent's user). */
export interface ServerOptions {
  socketPath: string;
  gid: number;
  allowedUids: readonly number[];
  service: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  readPeer(socket: Socket): PeerCred | undefined;
  log: Logger;
}

// Bounds that keep one caller from taking memory or turns from the others. A 20,000-peer spec is ~6 MB, and a larger request is refused
// from its length prefix; more streams than allowed per connection wait on the caller's side (HTTP/2 flow control).
export const serverLimits = { maxMessageBytes: 8 * 1024 * 1024, streamsPerConnection: 8, connectionsPerUid: 8, connections: 64 };

/** Kernel-attested callers of live connections, keyed by the peer name grpc-js reports for them. */
const callers = new Map<string, PeerCred>();
export const callerOf = (call: { getPeer(): string }): PeerCred | undefined => callers.get(call.getPeer());

const refuse = (log: Logger, allowed: readonly number[]): grpc.ServerInterceptor => (method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) => next({
      onReceiveMetadata(metadata, pass) {
        const who = callerOf(call);
        if (who !== undefined && (who.uid === 0 || allowed.includes(who.uid))) return pass(metadata);
        log.warn({ rpc: method.path.split("/").pop(), uid: who?.uid ?? -1, pid: who?.pid ?? -1, outcome: "permission_denied" }, "rpc");
        call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details: `uid ${who?.uid ?? "unknown"} may not use privhelper (only root and the agent's user)` });
      },
    }),
  });

async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new PlexdError("failed_precondition", `${path} exists and is not a socket; refusing to remove it`);
  const probe = connect(path);
  const answers = await new Promise<boolean>((resolve) => probe.once("connect", () => resolve(true)).once("error", () => resolve(false)));
  probe.destroy();
  if (answers) throw new PlexdError("already_exists", `${path}: another privhelper is already serving this socket`);
  await unlink(path);
}

export async function startServer(opts: ServerOptions): Promise<{ close(): Promise<void> }> {
  const dir = dirname(opts.socketPath);
  const own = (path: string, mode: number) => chown(path, 0, opts.gid).then(() => chmod(path, mode));
  await mkdir(dir, { recursive: true, mode: 0o750 });
  await own(dir, 0o750);
  await removeStaleSocket(opts.socketPath);

  const limits = { "grpc.max_receive_message_length": serverLimits.maxMessageBytes, "grpc.max_concurrent_streams": serverLimits.streamsPerConnection };
  const grpcServer = new grpc.Server({ ...limits, interceptors: [refuse(opts.log, opts.allowedUids)] });
  grpcServer.addService(opts.service, opts.implementation);
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const perUid = new Map<number, number>();
  let serial = 0;
  const listener = createServer((socket) => {
    const cred = opts.readPeer(socket);
    const uid = cred?.uid ?? -1;
    if ((perUid.get(uid) ?? 0) >= serverLimits.connectionsPerUid) {
      opts.log.warn({ uid, pid: cred?.pid ?? -1 }, "connection refused: too many from this uid");
      socket.destroy();
      return;
    }
    perUid.set(uid, (perUid.get(uid) ?? 0) + 1);
    // grpc-js names a call's peer by its socket's remoteAddress, which a unix socket lacks:
    // a serial name set here is how a call finds its connection's credentials.
    const name = `conn-${++serial}`;
    Object.defineProperty(socket, "remoteAddress", { value: name });
    if (cred) callers.set(name, cred);
    socket.once("close", () => {
      callers.delete(name);
      perUid.set(uid, (perUid.get(uid) ?? 1) - 1);
    });
    injector.injectConnection(socket);
  });
  listener.maxConnections = serverLimits.connections;
  // umask before listen: the socket inode is created 0660 and is never, even briefly, connectable by others.
  const oldMask = process.umask(0o117);
  try {
    await new Promise<void>((resolve, reject) => listener.once("error", reject).listen(opts.socketPath, resolve));
  } finally {
    process.umask(oldMask);
  }
  await own(opts.socketPath, 0o660);

  return {
    async close() {
      listener.close();
      injector.drain(1_000);
      const timer = setTimeout(() => grpcServer.forceShutdown(), 2_000);
      await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
      clearTimeout(timer);
    },
  };
}
