// startServer on a temp socket with a stand-in for the SO_PEERCRED reader: who is served, who
// is refused (before the request is even read), and what the socket looks like on disk.
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PrivHelperService } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { grpcServiceDefinition } from "../proto/lib/grpc.js";
import type { PeerCred } from "../proto/lib/peercred.js";
import { captureLog } from "../test/support/privhelper.js";
import { bindHandlers, createGate, type CallContext, type Handlers } from "./adapter.js";
import { callerOf, serverLimits, startServer } from "./server.js";

const root = process.getuid?.() === 0;
const gid = process.getgid?.() ?? 0;
const agentUid = 4321;
const def = grpcServiceDefinition(PrivHelperService);

const seen: CallContext[] = [];
const handlers = Object.fromEntries(
  PrivHelperService.methods.map((m) => [
    m.localName,
    (_req: unknown, ctx: CallContext) => {
      seen.push(ctx);
      return Promise.resolve({});
    },
  ]),
) as unknown as Handlers<(typeof PrivHelperService)["method"]>;

/** What the kernel would say about the next connections, in order; undefined: no record. */
let creds: (PeerCred | undefined)[] = [];
const { log, lines } = captureLog();
let dir: string;
let socketPath: string;
let server: { close(): Promise<void> } | undefined;
const clients: grpc.Client[] = [];

/** A client on a connection of its own (grpc-js would otherwise share one per target). */
function clientAs(cred: PeerCred | undefined): grpc.Client {
  creds.push(cred);
  const c = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  clients.push(c);
  return c;
}
function call(c: grpc.Client, name: string, raw?: Buffer): Promise<unknown> {
  const m = def[name]!;
  const body = raw ?? create(PrivHelperService.methods.find((x) => x.localName === name)!.input);
  return new Promise((resolve, reject) =>
    c.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, body, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-server-"));
  socketPath = join(dir, "run", "plexd-priv", "privhelper.sock");
  if (!root) return;
  server = await startServer({
    socketPath,
    gid,
    allowedUids: [agentUid],
    service: grpcServiceDefinition(PrivHelperService, { rawRequests: true }),
    implementation: bindHandlers(PrivHelperService, handlers, { log, gates: { read: createGate(4, 16), write: createGate(4, 16), run: createGate(4, 16) }, callerOf }),
    readPeer: () => creds.shift(),
    log,
  });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  seen.length = 0;
  lines.length = 0;
  creds = [];
});

// startServer chowns the directory and socket to root: only root can run it.
describe.skipIf(!root)("startServer", () => {
  it("makes the directory root:<group> 0750 and the socket root:<group> 0660", async () => {
    const d = await stat(join(dir, "run", "plexd-priv"));
    expect([d.mode & 0o7777, d.uid, d.gid]).toEqual([0o750, 0, gid]);
    const s = await stat(socketPath);
    expect(s.isSocket()).toBe(true);
    expect([s.mode & 0o7777, s.uid, s.gid]).toEqual([0o660, 0, gid]);
  });

  it("serves root and the agent's user, handing the handler the kernel's uid and pid", async () => {
    await call(clientAs({ uid: 0, gid: 0, pid: 11 }), "getInfo");
    await call(clientAs({ uid: agentUid, gid, pid: 12 }), "applyMesh");
    expect(seen.map(({ uid, pid }) => ({ uid, pid }))).toEqual([
      { uid: 0, pid: 11 },
      { uid: agentUid, pid: 12 },
    ]);
  });

  it("refuses any other uid with PERMISSION_DENIED before the request is read: no handler runs, not even a decode", async () => {
    const outsider = clientAs({ uid: 1234, gid, pid: 13 });
    await expect(call(outsider, "teardown")).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringContaining("uid 1234 may not use privhelper") });
    // Malformed bytes would be INVALID_ARGUMENT for a caller who may call: refused first.
    await expect(call(outsider, "applyMesh", Buffer.from([0x0a, 0x05, 0x01]))).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(seen).toEqual([]);
    expect(lines.filter((l) => l.outcome === "permission_denied")).toMatchObject([
      { level: 40, rpc: "Teardown", uid: 1234, pid: 13 },
      { level: 40, rpc: "ApplyMesh", uid: 1234, pid: 13 },
    ]);
  });

  it("refuses a connection the kernel could not tell about", async () => {
    await expect(call(clientAs(undefined), "getInfo")).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringContaining("uid unknown") });
    expect(seen).toEqual([]);
  });

  it("each connection keeps its own caller: a refused one does not taint an allowed one", async () => {
    const agent = clientAs({ uid: agentUid, gid, pid: 20 });
    const other = clientAs({ uid: 999, gid, pid: 21 });
    await call(agent, "getInfo");
    await expect(call(other, "getInfo")).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    await call(agent, "readMesh");
    expect(seen.map((s) => s.pid)).toEqual([20, 20]);
  });

  it(`accepts at most ${serverLimits.connectionsPerUid} connections per uid`, async () => {
    const open = async (): Promise<{ sock: Socket; closed: Promise<boolean> }> => {
      creds.push({ uid: 5555, gid, pid: 30 });
      const sock = connect(socketPath);
      await new Promise((r) => sock.once("connect", r));
      const closed = new Promise<boolean>((r) => {
        sock.once("close", () => r(true));
        setTimeout(() => r(false), 300);
      });
      return { sock, closed };
    };
    const socks = [];
    for (let i = 0; i < serverLimits.connectionsPerUid; i++) socks.push(await open());
    const extra = await open();
    expect(await extra.closed).toBe(true);
    expect(await Promise.all(socks.map((s) => s.closed))).toEqual(socks.map(() => false));
    expect(lines.find((l) => l.msg === "connection refused: too many from this uid")).toMatchObject({ uid: 5555 });
    // a closed connection frees its place
    socks[0]!.sock.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const again = await open();
    expect(await again.closed).toBe(false);
    for (const s of [...socks, again]) s.sock.destroy();
  });

  it("takes over a socket nobody answers on; refuses one that answers, and a path that is not a socket", async () => {
    const other = join(dir, "other");
    const opts = { gid, allowedUids: [], service: grpcServiceDefinition(PrivHelperService, { rawRequests: true }), implementation: {}, readPeer: () => undefined, log };
    // A socket left by a killed process.
    const stale = join(other, "stale.sock");
    spawnSync(process.execPath, ["-e", `require("node:fs").mkdirSync(${JSON.stringify(other)}, { recursive: true }); require("node:net").createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, "SIGKILL"))`]);
    expect((await stat(stale)).isSocket()).toBe(true);
    const s2 = await startServer({ ...opts, socketPath: stale });
    await s2.close();
    // The running server answers on its socket.
    await expect(startServer({ ...opts, socketPath })).rejects.toMatchObject({ code: "already_exists" });
    const file = join(other, "file.sock");
    await writeFile(file, "keep me");
    const err = await startServer({ ...opts, socketPath: file }).catch((e: unknown) => PlexdError.from(e));
    expect(err).toMatchObject({ code: "failed_precondition" });
    expect(await readFile(file, "utf8")).toBe("keep me");
  });
});
