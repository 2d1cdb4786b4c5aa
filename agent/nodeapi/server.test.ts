import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../util/log.js";
import type { AccessPolicy, PeerCred } from "./access.js";
import { FakeBackend } from "../../test/support/nodeapi-fake-backend.js";
import { startNodeApi, type NodeApiOptions, type NodeApiServer } from "./server.js";
import { NodeState, type CpRequestFn } from "./state/node-state.js";

const log = createLogger({ name: "test", level: "silent" });
const repo = resolve(import.meta.dirname, "../..");

let dir: string;
let socketPath: string;
let backend: FakeBackend;
let state: NodeState;
let server: NodeApiServer | undefined;
let ac: AbortController;
let cred: PeerCred | undefined;
let cpAnswer: Awaited<ReturnType<CpRequestFn>>;

const policy: AccessPolicy = { adminUids: [999], secretsGid: 4242, groupsOf: async (pid) => (pid === 77 ? [10, 4242] : [10]) };

async function start(extra: Partial<NodeApiOptions> = {}): Promise<NodeApiServer> {
  server = await startNodeApi({
    socketPath,
    backend,
    state,
    log,
    signal: ac.signal,
    peerCredentials: () => cred,
    accessPolicy: policy,
    ...extra,
  });
  return server;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-nodeapi-"));
  socketPath = join(dir, "api.sock");
  backend = new FakeBackend();
  cred = { pid: 1, uid: 1000, gid: 1000 };
  cpAnswer = { status: 404, body: {} };
  state = await NodeState.open({ dataDir: dir, nodeId: () => "node_1", cpRequest: async () => cpAnswer, log, nsk: async () => Buffer.alloc(32) });
  await state.applyDownstream({
    metadata: { region: "eu" },
    data: [{ key: "cfg", content_type: "application/json", payload: { a: [1, "x", null] }, version: 3, updated_at: "2025-01-15T10:30:00Z" }],
    secretRefs: [{ key: "tls", version: 2 }],
  });
  ac = new AbortController();
});

afterEach(async () => {
  ac.abort();
  await server?.close();
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: () => Record<string, unknown>;
}

function request(method: string, path: string, body?: string, headers: Record<string, string> = {}, target: { socketPath: string } | { port: number } = { socketPath }): Promise<HttpResult> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request({ ...target, host: "127.0.0.1", method, path, headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("node API over HTTP/1.1", () => {
  it("serves Connect-JSON with proto field names and defaults emitted", async () => {
    await start();
    const res = await request("POST", "/plexd.node.v1.AgentService/GetStatus", "{}");
    expect(res.status).toBe(200);
    const body = res.json();
    expect(body.node_id).toBe("node_fake01");
    expect(body.uptime).toBe("1h2m3s");
    expect(body.state_counts).toEqual({ metadata: 1, data: 1, secrets: 1, reports: 0, reports_pending: 0 });
    expect(body.health).toEqual([]);
    expect((body.sse as Record<string, unknown>).reconnects).toBe(2);
  });

  it("REST routes: status, peers, state, reports with ETag and If-Match, Connect error bodies", async () => {
    await start();
    expect((await request("GET", "/v1/agent/status")).json().mesh_ip).toBe("10.100.0.1");
    const peers = (await request("GET", "/v1/agent/peers")).json().peers as { peer_id: string }[];
    expect(peers.map((p) => p.peer_id)).toEqual(["node_alpha", "node_bravo"]);
    const all = (await request("GET", "/v1/agent/peers?all=true")).json().peers as unknown[];
    expect(all).toHaveLength(3);
    expect((await request("GET", "/v1/agent/policies?rules=1")).json().firewall_rules).toHaveLength(1);

    expect((await request("GET", "/v1/state")).json()).toEqual({
      metadata: { region: "eu" },
      data_keys: [{ key: "cfg", version: 3, content_type: "application/json", sync_state: "" }],
      secret_keys: [{ key: "tls", version: 2 }],
      report_keys: [],
    });
    expect((await request("GET", "/v1/state/metadata/region")).json()).toEqual({ key: "region", value: "eu" });
    expect((await request("GET", "/v1/state/data/cfg")).json().entry).toEqual({
      key: "cfg",
      content_type: "application/json",
      payload: { a: [1, "x", null] },
      version: 3,
      updated_at: "2025-01-15T10:30:00Z",
    });

    const put = await request("PUT", "/v1/state/report/app-health", JSON.stringify({ content_type: "application/json", payload: { ok: true } }));
    expect(put.status).toBe(200);
    expect(put.headers.etag).toBe('"1"');
    const get = await request("GET", "/v1/state/report/app-health");
    expect(get.headers.etag).toBe('"1"');
    expect((get.json().entry as { payload: unknown }).payload).toEqual({ ok: true });
    const stale = await request("PUT", "/v1/state/report/app-health", JSON.stringify({ payload: 1 }), { "If-Match": '"7"' });
    expect(stale.status).toBe(409);
    expect(stale.json()).toEqual({ code: "aborted", message: expect.stringContaining("version mismatch") as unknown });
    expect((await request("PUT", "/v1/state/report/app-health", JSON.stringify({ payload: 2 }), { "If-Match": "1" })).headers.etag).toBe('"2"');
    expect((await request("PUT", "/v1/state/report/app-health", JSON.stringify({ payload: 2 }), { "If-Match": "W/1" })).status).toBe(400);
    expect((await request("PUT", "/v1/state/report/x", "{not json")).status).toBe(400);
    expect((await request("GET", "/v1/state/report")).json().entries).toEqual([{ key: "app-health", version: 2, content_type: "application/json", sync_state: "pending" }]);
    const del = await request("DELETE", "/v1/state/report/app-health", undefined, { "If-Match": "2" });
    expect(del.status).toBe(204);
    expect(del.text).toBe("");
    const missing = await request("GET", "/v1/state/report/app-health");
    expect(missing.status).toBe(404);
    expect(missing.json().code).toBe("not_found");
    expect((await request("GET", "/v1/state/data/bad%2Fkey")).status).toBe(400);
    expect((await request("GET", "/v1/nothing-here")).status).toBe(404);
    expect((await request("POST", "/v1/agent/status")).status).toBe(405);
    expect((await request("GET", "/v1/agent/hooks")).json().code).toBe("unimplemented");
  });

  it("secrets: Cache-Control no-store, error mapping, and the secrets class", async () => {
    await start();
    const denied = await request("GET", "/v1/state/secrets/tls");
    expect(denied.status).toBe(403);
    cred = { pid: 77, uid: 1000, gid: 1000 }; // supplementary group plexd-secrets
    await server?.close();
    await start();
    const notFound = await request("GET", "/v1/state/secrets/tls");
    expect(notFound.status).toBe(404);
    expect(notFound.headers["cache-control"]).toBe("no-store");
    cpAnswer = { status: 503, body: {} };
    const down = await request("GET", "/v1/state/secrets/tls");
    expect(down.status).toBe(503);
    expect(down.json()).toEqual({ code: "unavailable", message: "control plane unavailable" });
    cpAnswer = { status: 200, body: { key: "tls", version: 2, nonce: "AAAAAAAAAAAAAAAA", ciphertext: "AAAAAAAAAAAAAAAAAAAAAA==" } };
    const bad = await request("GET", "/v1/state/secrets/tls");
    expect(bad.status).toBe(500);
    expect(bad.json()).toEqual({ code: "internal", message: "decryption failed" });
    // The index never needs the secrets class.
    cred = undefined;
    await server!.close();
    await start();
    expect((await request("GET", "/v1/state/secrets")).json()).toEqual({ secrets: [{ key: "tls", version: 2 }] });
    expect((await request("GET", "/v1/state/secrets/tls")).status).toBe(403);
  });

  it("access classes: admin needs uid 0 or the plexd user; unreadable credentials deny secrets and admin", async () => {
    const cases: [PeerCred | undefined, number, number][] = [
      // [credentials, GetSecret status, Deregister status]
      [{ pid: 1, uid: 0, gid: 0 }, 404, 501],
      [{ pid: 1, uid: 999, gid: 999 }, 403, 501],
      [{ pid: 1, uid: 1000, gid: 4242 }, 404, 403],
      [{ pid: 1, uid: 1000, gid: 1000 }, 403, 403],
      [undefined, 403, 403],
    ];
    for (const [c, secret, admin] of cases) {
      cred = c;
      await server?.close();
      await start();
      expect((await request("GET", "/v1/state/secrets/tls")).status, JSON.stringify(c)).toBe(secret);
      // 501: past the access gate, the fake backend has no Deregister.
      expect((await request("POST", "/v1/agent/deregister", "{}")).status, JSON.stringify(c)).toBe(admin);
      expect((await request("GET", "/v1/agent/status")).status).toBe(200);
    }
  });

  it("TCP listener: bearer token required, secrets token for secrets, never admin", async () => {
    cred = { pid: 1, uid: 0, gid: 0 }; // must not leak into TCP decisions
    const srv = await start({ http: { listen: "127.0.0.1:0", token: "reader-token", secretsToken: "secrets-token" } });
    const target = { port: srv.tcpAddress!.port };
    expect((await request("GET", "/v1/agent/status", undefined, {}, target)).status).toBe(401);
    expect((await request("GET", "/v1/agent/status", undefined, { authorization: "Bearer nope" }, target)).status).toBe(401);
    expect((await request("GET", "/v1/agent/status", undefined, { authorization: "Bearer reader-token" }, target)).status).toBe(200);
    expect((await request("GET", "/v1/state/secrets/tls", undefined, { authorization: "Bearer reader-token" }, target)).status).toBe(403);
    expect((await request("GET", "/v1/state/secrets/tls", undefined, { authorization: "Bearer secrets-token" }, target)).status).toBe(404);
    expect((await request("POST", "/v1/agent/deregister", "{}", { authorization: "Bearer secrets-token" }, target)).status).toBe(403);
    const connect = await request("POST", "/plexd.node.v1.AgentService/GetStatus", "{}", {}, target);
    expect(connect.status).toBe(401);
    expect(connect.json().code).toBe("unauthenticated");
  });

  it("socket is 0660, replaces a stale file, refuses a live one, and is removed on close", async () => {
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(socketPath, r));
    await expect(start()).rejects.toThrow(/another process/);
    await new Promise<void>((r) => stale.close(() => r()));
    await writeFile(join(dir, "not-a-socket"), "x");
    await expect(startNodeApi({ socketPath: join(dir, "not-a-socket"), backend, log, signal: ac.signal })).rejects.toThrow(/not a socket/);

    // A socket file whose server died.
    const { execFileSync } = await import("node:child_process");
    execFileSync(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(socketPath)}, () => process.exit(0))`]);
    expect((await stat(socketPath)).isSocket()).toBe(true);
    const srv = await start();
    expect((await stat(socketPath)).mode & 0o777).toBe(0o660);
    expect((await stat(socketPath)).gid).toBe(process.getgid!());
    await srv.close();
    await expect(stat(socketPath)).rejects.toThrow();
  });
});

// An independent client nobody here wrote: grpc-js with the .proto loaded by proto-loader.
function grpcClients(): { agent: grpc.Client & Record<string, unknown>; state: grpc.Client & Record<string, unknown> } {
  const def = protoLoader.loadSync("plexd/node/v1/node.proto", { includeDirs: [join(repo, "proto")], keepCase: true, longs: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { plexd: { node: { v1: Record<string, grpc.ServiceClientConstructor> } } };
  const v1 = pkg.plexd.node.v1;
  const mk = (name: string): grpc.Client & Record<string, unknown> =>
    new v1[name]!(`unix://${socketPath}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, unknown>;
  return { agent: mk("AgentService"), state: mk("NodeStateService") };
}

function call<T>(client: grpc.Client & Record<string, unknown>, method: string, req: unknown): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    (client[method] as (r: unknown, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(client, req, (e, v) => (e ? reject(e) : resolvePromise(v)));
  });
}

describe("node API over gRPC (grpc-js + proto-loader)", () => {
  it("unary calls, status codes and the Watch stream", async () => {
    await start();
    const { agent, state: st } = grpcClients();
    try {
      const status = await call<{ node_id: string; counters: Record<string, string> }>(agent, "GetStatus", {});
      expect(status.node_id).toBe("node_fake01");
      expect(status.counters).toEqual({ events_received: "42", reconcile_cycles: "7" });
      const peers = await call<{ peers: { peer_id: string; rx_bytes: string }[] }>(agent, "ListPeers", { all: false });
      expect(peers.peers.map((p) => [p.peer_id, p.rx_bytes])).toEqual([
        ["node_alpha", "1000000"],
        ["node_bravo", "0"],
      ]);
      expect(await call(st, "GetMetadata", {})).toEqual({ metadata: { region: "eu" } });
      const err = await call(st, "GetMetadataValue", { key: "missing" }).catch((e: grpc.ServiceError) => e);
      expect((err as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
      const put = await call<{ entry: { version: number } }>(st, "PutReport", {
        key: "r1",
        content_type: "application/json",
        // protobufjs bundles google/protobuf/struct.proto with camelCase field names.
        payload: { structValue: { fields: { ok: { boolValue: true } } } },
      });
      expect(put.entry.version).toBe(1);
      expect(state.getReport("r1").payload).toEqual({ ok: true });
      const conflict = await call(st, "PutReport", { key: "r1", content_type: "application/json", payload: { numberValue: 1 }, if_match: 0 }).catch((e: grpc.ServiceError) => e);
      expect((conflict as grpc.ServiceError).code).toBe(grpc.status.ABORTED);
      const empty = await call(st, "PutReport", { key: "r2", content_type: "application/json" }).catch((e: grpc.ServiceError) => e);
      expect((empty as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
      const denied = await call(st, "GetSecret", { key: "tls" }).catch((e: grpc.ServiceError) => e);
      expect((denied as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);

      const stream = (agent.Watch as (r: unknown) => grpc.ClientReadableStream<{ kind: string; subject: string }>).call(agent, { kinds: ["peer_up"] });
      const got: { kind: string; subject: string }[] = [];
      const done = new Promise<void>((r) =>
        stream.on("data", (m: { kind: string; subject: string }) => {
          got.push(m);
          if (got.length === 2) r();
        }),
      );
      stream.on("error", () => undefined);
      for (let i = 0; i < 100 && backend.subscribers.events === 0; i++) await new Promise((r) => setTimeout(r, 10));
      backend.emit({ kind: "peer_up", subject: "node_alpha", detail: "handshake" });
      backend.emit({ kind: "policy_changed", subject: "pol_web", detail: "" });
      backend.emit({ kind: "peer_up", subject: "node_bravo", detail: "" });
      await done;
      expect(got.map((m) => `${m.kind}:${m.subject}`)).toEqual(["peer_up:node_alpha", "peer_up:node_bravo"]);
      stream.cancel();
      for (let i = 0; i < 100 && backend.subscribers.events > 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(backend.subscribers.events).toBe(0);
    } finally {
      agent.close();
      st.close();
    }
  });

  it("WatchStatus sends a snapshot at once and at most 2 per second", async () => {
    await start();
    const { agent, state: st } = grpcClients();
    try {
      const stream = (agent.WatchStatus as (r: unknown) => grpc.ClientReadableStream<{ status: { phase: string } }>).call(agent, {});
      const seen: { at: number; phase: string }[] = [];
      stream.on("data", (m: { status: { phase: string } }) => seen.push({ at: Date.now(), phase: m.status.phase }));
      stream.on("error", () => undefined);
      for (let i = 0; i < 200 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen[0]?.phase).toBe("running");
      const t0 = Date.now();
      for (let i = 0; i < 20; i++) {
        backend.setStatus({ phase: i === 19 ? "degraded" : `p${i}` });
        await new Promise((r) => setTimeout(r, 50));
      }
      for (let i = 0; i < 200 && seen.at(-1)?.phase !== "degraded"; i++) await new Promise((r) => setTimeout(r, 10));
      const elapsed = Date.now() - t0;
      expect(seen.at(-1)?.phase).toBe("degraded"); // the last change is never lost
      expect(seen.length - 1).toBeLessThanOrEqual(Math.ceil(elapsed / 500) + 1);
      // Arrival times, not send times: on a loaded machine one message can reach the client late
      // and the next on time, so a gap may look shorter than the 500 ms the server keeps.
      for (let i = 1; i < seen.length; i++) expect(seen[i]!.at - seen[i - 1]!.at).toBeGreaterThanOrEqual(300);
      stream.cancel();
    } finally {
      agent.close();
      st.close();
    }
  });

  it("grpc.health.v1 Watch: the serving status at once, then each change", async () => {
    await start();
    const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [join(repo, "proto")], keepCase: true, enums: String, defaults: true });
    const Health = (grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } }).grpc.health.v1.Health;
    const client = new Health(`unix://${socketPath}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, unknown>;
    try {
      const stream = (client.Watch as (r: unknown) => grpc.ClientReadableStream<{ status: string }>).call(client, { service: "" });
      const seen: string[] = [];
      stream.on("data", (m: { status: string }) => seen.push(m.status));
      stream.on("error", () => undefined);
      for (let i = 0; i < 300 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toEqual(["SERVING"]);
      backend.setStatus({ health: [{ code: "privhelper_unavailable", severity: "critical", text: "gone", since: Date.now() }] });
      for (let i = 0; i < 300 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toEqual(["SERVING", "NOT_SERVING"]);
      stream.cancel();
    } finally {
      client.close();
    }
  });

  it("an answer in flight still reaches its caller when the server closes right after it", async () => {
    backend.deregister = async () => {
      // The agent's main loop closes the node API as soon as the deregistration settles.
      setImmediate(() => void server?.close());
      return { nodeId: "node_fake01", purged: true, removed: ["plexd0"], errors: [] };
    };
    cred = { pid: 1, uid: 999, gid: 999 };
    await start();
    const { agent, state: st } = grpcClients();
    try {
      expect(await call(agent, "Deregister", { purge: true, force: false })).toMatchObject({ node_id: "node_fake01", purged: true });
    } finally {
      agent.close();
      st.close();
    }
  });
});
