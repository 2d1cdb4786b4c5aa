// grpc-js on a unix socket whose file mode is the caller gate (node-agent.md 1.4):
// directory root:<group> 0750, socket root:<group> 0660, so a process outside the group
// gets EACCES from connect(2) before any RPC runs. Node exposes no SO_PEERCRED, so the
// optional peer-uid check is not applied here; the file mode is the baseline the spec requires.
import { chmod, chown, lstat, mkdir, unlink } from "node:fs/promises";
import type { Http2Server } from "node:http2";
import { connect } from "node:net";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { PlexdError } from "../proto/lib/errors.js";
import type { Runner } from "./os/runner.js";

export interface ServerOptions {
  socketPath: string;
  group: string;
  service: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  runner: Runner;
}

export interface RunningServer {
  readonly gid: number;
  /** Whether the large receive window could be set (grpc-js internals as of 1.14). */
  readonly widened: boolean;
  close(): Promise<void>;
}

/** gid of a group through NSS (getent), so LDAP/sssd groups work like /etc/group ones. */
export async function groupId(runner: Runner, group: string): Promise<number> {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/i.test(group)) throw new PlexdError("invalid_argument", `invalid group name ${JSON.stringify(group)}`);
  const r = await runner.run("getent", ["group", group], { allowFailure: true, timeoutMs: 5_000 });
  const gid = Number(r.stdout.split(":")[2]);
  if (r.exitCode !== 0 || !Number.isInteger(gid)) {
    throw new PlexdError(
      "failed_precondition",
      `group ${JSON.stringify(group)} does not exist; create it (groupadd --system ${group}) or pass --group`,
    );
  }
  return gid;
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new PlexdError("failed_precondition", `${path} exists and is not a socket; refusing to remove it`);
  if (await socketAnswers(path)) throw new PlexdError("already_exists", `${path}: another privhelper is already serving this socket`);
  await unlink(path);
}

/**
 * A full mesh spec is megabytes at 10,000 peers, and HTTP/2's default 64 KiB receive window
 * makes the sender stop for a WINDOW_UPDATE every four frames — most of the cost of a large
 * ApplyMesh on both sides. grpc-js servers have no option for it (grpc/grpc-node#3058 adds
 * one), so each new session gets a window that holds the largest request at once.
 */
export const receiveWindowBytes = 16 * 1024 * 1024;

export function widenReceiveWindow(server: grpc.Server): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) return false;
  for (const h of servers.keys() as IterableIterator<Http2Server>) {
    h.on("session", (session) => {
      session.settings({ initialWindowSize: receiveWindowBytes, maxFrameSize: receiveWindowBytes - 1 });
      session.setLocalWindowSize(receiveWindowBytes);
    });
  }
  return true;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const gid = await groupId(opts.runner, opts.group);
  const dir = dirname(opts.socketPath);
  await mkdir(dir, { recursive: true, mode: 0o750 });
  // Fix ownership and mode even when the directory already existed (e.g. created by hand).
  await chown(dir, 0, gid);
  await chmod(dir, 0o750);
  await removeStaleSocket(opts.socketPath);

  const server = new grpc.Server({ "grpc.max_receive_message_length": maxMessageBytes });
  server.addService(opts.service, opts.implementation);
  // umask before bind: the socket inode is created 0660 and is never, even briefly,
  // connectable by others.
  const oldMask = process.umask(0o117);
  try {
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(`unix:${opts.socketPath}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
  } finally {
    process.umask(oldMask);
  }
  await chown(opts.socketPath, 0, gid);
  await chmod(opts.socketPath, 0o660);
  const widened = widenReceiveWindow(server);

  return {
    gid,
    widened,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 2_000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

/** Upper bound for one request: a 20,000-peer MeshSpec is ~6 MB; anything bigger is refused by grpc-js. */
export const maxMessageBytes = 16 * 1024 * 1024;
