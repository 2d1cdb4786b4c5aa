import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PlexdError } from "../../proto/lib/errors.js";
import { parseConfigText } from "../config/load.js";
import type { CpRequest, CpResponse } from "../controlplane/http.js";
import type { Peer } from "../mesh/peer.js";
import { DesiredStateStore } from "../state/desired.js";
import { FakeClock } from "../util/clock.js";
import { createLogger } from "../util/log.js";
import { resolveStunServer, startNatLoop, type NatLoopDeps, type NatResult } from "./loop.js";
import { STUN_MAGIC_COOKIE } from "./stun.js";

// The loop against a fake privhelper that answers like STUN servers behind a configurable NAT,
// a fake control plane that records the endpoint reports, the real desired-state store and a
// fake clock.

/** A Binding success for `request` (as a server would build it) mapping to ip:port. */
function stunReply(request: Uint8Array, ip: string, port: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt16BE(0x0101, 0);
  b.writeUInt16BE(12, 2);
  Buffer.from(request).copy(b, 4, 4, 20);
  b.writeUInt16BE(0x0020, 20);
  b.writeUInt16BE(8, 22);
  b[25] = 1;
  b.writeUInt16BE(port ^ (STUN_MAGIC_COOKIE >>> 16), 26);
  const o = ip.split(".").map(Number);
  b.writeUInt32BE((((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) ^ STUN_MAGIC_COOKIE) >>> 0, 28);
  return b;
}

type Behaviour = { ip: string; port: number; fromMeshPort?: boolean } | "silent" | "garbage" | "unimplemented";

class FakePriv {
  /** server "ip:port" → what it answers. */
  servers = new Map<string, Behaviour>();
  calls: { ip: string; port: number; timeoutMs: number; requestLen: number }[] = [];
  stunProbe = async (req?: { ip?: string; port?: number; request?: Uint8Array; timeoutMs?: number }) => {
    const ip = req?.ip ?? "";
    const port = req?.port ?? 0;
    const request = req?.request ?? new Uint8Array();
    this.calls.push({ ip, port, timeoutMs: req?.timeoutMs ?? 0, requestLen: request.length });
    const b = this.servers.get(`${ip}:${port}`) ?? "silent";
    if (b === "silent") throw new PlexdError("deadline_exceeded", "no answer");
    if (b === "unimplemented") throw new PlexdError("unimplemented", "StunProbe is not implemented");
    if (b === "garbage") return { $typeName: "plexd.priv.v1.StunProbeResponse" as const, reply: new Uint8Array([1, 2, 3]), sourcePort: 51820, fromMeshPort: true };
    return { $typeName: "plexd.priv.v1.StunProbeResponse" as const, reply: stunReply(request, b.ip, b.port), sourcePort: 51820, fromMeshPort: b.fromMeshPort ?? true };
  };
}

class FakeCp {
  reports: { path: string; body: unknown; token: string | undefined }[] = [];
  status = 200;
  peerEndpoints: { peer_id: string; endpoint: string }[] = [];
  request = async <T,>(req: CpRequest): Promise<CpResponse<T>> => {
    this.reports.push({ path: req.path, body: req.body, token: req.token });
    return { status: this.status, headers: {}, body: (this.status === 200 ? { peer_endpoints: this.peerEndpoints } : { error: "boom" }) as T };
  };
}

const key = (c: string) => Buffer.alloc(32, c).toString("base64");
const peer = (id: string, endpoint = ""): Peer => ({ id, public_key: key(id), mesh_ip: "10.100.0.9", endpoint, allowed_ips: ["10.100.0.9/32"], psk: key("p") });

function config(extra = "") {
  return parseConfigText(
    `api: https://cp.example\nmesh:\n  listen_port: 51820\nnat_traversal:\n  stun_servers: ["stun1.test:3478", "192.0.2.60:3479", "stun3.test:3478"]\n  refresh_interval: 30s\n  timeout: 2s\n${extra}`,
    "nat.yaml",
    { env: {} },
  ).config;
}

let dir: string;
let store: DesiredStateStore;
let clock: FakeClock;
let priv: FakePriv;
let cp: FakeCp;
let ac: AbortController;
let logs: string[];
let local: Set<string>;
let results: NatResult[];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "plexd-nat-"));
  store = await DesiredStateStore.open(dir);
  store.update((s) => {
    s.peers.n_b = peer("n_b", "192.0.2.99:51820");
    s.peers.n_c = peer("n_c");
    return ["peers"];
  });
  clock = new FakeClock();
  priv = new FakePriv();
  cp = new FakeCp();
  ac = new AbortController();
  logs = [];
  local = new Set(["127.0.0.1", "198.18.1.2"]);
  results = [];
});

afterEach(async () => {
  ac.abort();
  await store.flush();
  rmSync(dir, { recursive: true, force: true });
});

function start(overrides: Partial<NatLoopDeps> = {}) {
  const log = createLogger({
    name: "nat-test",
    level: "debug",
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString());
        cb();
      },
    }),
  });
  return startNatLoop({
    config: config(),
    priv,
    cp,
    nodeId: () => "n_a",
    token: () => "tok",
    store,
    log,
    clock,
    signal: ac.signal,
    onResult: (r) => results.push(r),
    resolve: async (host) => ({ "stun1.test": "192.0.2.50", "stun3.test": "192.0.2.70" })[host] ?? Promise.reject(new PlexdError("unavailable", `ENOTFOUND ${host}`)),
    localAddresses: () => local,
    addressPollMs: 5000,
    ...overrides,
  });
}

/** Lets the loop run its cycle and park in its sleep. */
async function idle(): Promise<void> {
  await clock.waitForSleepers(1);
}

describe("startNatLoop", () => {
  it("full cone: two servers agree → reports full_cone with relay_fallback and writes peer endpoints", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "203.0.113.1", port: 51820 });
    priv.servers.set("192.0.2.60:3479", { ip: "203.0.113.1", port: 51820 });
    cp.peerEndpoints = [
      { peer_id: "n_b", endpoint: "203.0.113.2:51820" },
      { peer_id: "n_c", endpoint: "" },
      { peer_id: "n_unknown", endpoint: "203.0.113.3:51820" },
    ];
    const seen: string[] = [];
    store.subscribe((slices) => seen.push([...slices].join()));
    const loop = start();
    await idle();
    expect(priv.calls.map((c) => `${c.ip}:${c.port}`)).toEqual(["192.0.2.50:3478", "192.0.2.60:3479"]);
    expect(priv.calls.every((c) => c.timeoutMs === 2000 && c.requestLen === 20)).toBe(true);
    expect(cp.reports).toEqual([{ path: "/v1/nodes/n_a/endpoint", body: { public_endpoint: "203.0.113.1:51820", nat_type: "full_cone", relay_fallback: true }, token: "tok" }]);
    expect(store.state.peers.n_b?.endpoint).toBe("203.0.113.2:51820");
    expect(store.state.peers.n_c?.endpoint).toBe(""); // empty endpoints are skipped
    expect(store.state.peers.n_unknown).toBeUndefined();
    expect(seen).toEqual(["peers"]);
    expect(loop.heartbeatBlock()).toEqual({ public_endpoint: "203.0.113.1:51820", type: "full_cone" });
    expect(results).toHaveLength(1);
    expect(logs.join("")).toContain('"new_endpoint":"203.0.113.1:51820"');
  });

  it("symmetric: different mappings → symmetric; fallback none → relay_fallback false", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "203.0.113.1", port: 40001 });
    priv.servers.set("192.0.2.60:3479", { ip: "203.0.113.1", port: 40002 });
    start({ config: config("  fallback: none\n") });
    await idle();
    expect(cp.reports[0]?.body).toEqual({ public_endpoint: "203.0.113.1:40001", nat_type: "symmetric", relay_fallback: false });
  });

  it("no NAT: the first answer decides, no second probe", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "198.18.1.2", port: 51820 });
    start();
    await idle();
    expect(priv.calls).toHaveLength(1);
    expect(cp.reports[0]?.body).toMatchObject({ public_endpoint: "198.18.1.2:51820", nat_type: "none" });
  });

  it("skips servers that are silent, unresolvable or answer garbage; one answer → unknown", async () => {
    priv.servers.set("192.0.2.50:3478", "garbage");
    priv.servers.set("192.0.2.70:3478", { ip: "203.0.113.1", port: 51820 });
    start();
    await idle();
    expect(priv.calls.map((c) => c.ip)).toEqual(["192.0.2.50", "192.0.2.60", "192.0.2.70"]);
    expect(cp.reports[0]?.body).toMatchObject({ public_endpoint: "203.0.113.1:51820", nat_type: "unknown" });
  });

  it("privhelper fallback from an ephemeral port: local address → none at the listen port; behind NAT → nothing reported", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "198.18.1.2", port: 39999, fromMeshPort: false });
    const loop = start();
    await idle();
    expect(cp.reports[0]?.body).toMatchObject({ public_endpoint: "198.18.1.2:51820", nat_type: "none" });

    priv.servers.set("192.0.2.50:3478", { ip: "203.0.113.1", port: 39999, fromMeshPort: false });
    loop.refresh();
    await clock.advance(0);
    await idle();
    expect(cp.reports).toHaveLength(1);
    expect(loop.latest()?.public_endpoint).toBe("198.18.1.2:51820"); // previous result kept
    expect(logs.join("")).toContain("no usable endpoint");
  });

  it("all servers failing keeps the previous result and retries next tick; reports again unchanged", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "203.0.113.1", port: 51820 });
    priv.servers.set("192.0.2.60:3479", { ip: "203.0.113.1", port: 51820 });
    const loop = start();
    await idle();
    expect(cp.reports).toHaveLength(1);
    priv.servers.clear();
    await clock.advance(30_000);
    await idle();
    expect(cp.reports).toHaveLength(1);
    expect(loop.heartbeatBlock()).toEqual({ public_endpoint: "203.0.113.1:51820", type: "full_cone" });
    expect(logs.join("")).toContain("no STUN server answered");
    priv.servers.set("192.0.2.50:3478", { ip: "203.0.113.1", port: 51820 });
    priv.servers.set("192.0.2.60:3479", { ip: "203.0.113.1", port: 51820 });
    await clock.advance(30_000);
    await idle();
    // After every successful discovery, changed or not.
    expect(cp.reports).toHaveLength(2);
    expect(results).toHaveLength(2);
  });

  it("refreshes every refresh_interval, not before", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "198.18.1.2", port: 51820 });
    start();
    await idle();
    await clock.advance(29_000);
    expect(cp.reports).toHaveLength(1);
    await clock.advance(1_000);
    await idle();
    expect(cp.reports).toHaveLength(2);
  });

  it("a local address change triggers a discovery within one poll", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "203.0.113.1", port: 51820 });
    priv.servers.set("192.0.2.60:3479", { ip: "203.0.113.1", port: 51820 });
    const loop = start();
    await idle();
    priv.servers.set("192.0.2.50:3478", { ip: "203.0.113.7", port: 1024 });
    priv.servers.set("192.0.2.60:3479", { ip: "203.0.113.7", port: 1024 });
    local = new Set(["127.0.0.1", "198.18.1.3"]);
    await clock.advance(5_000);
    await idle();
    expect(cp.reports).toHaveLength(2);
    expect(loop.heartbeatBlock()).toEqual({ public_endpoint: "203.0.113.7:1024", type: "full_cone" });
    expect(logs.join("")).toMatch(/"old_endpoint":"203.0.113.1:51820","new_endpoint":"203.0.113.7:1024"/);
  });

  it("a failed report is logged and the loop goes on; 401 is identity loss", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "198.18.1.2", port: 51820 });
    cp.status = 401;
    const rejected: number[] = [];
    start({ onIdentityRejected: (s) => rejected.push(s) });
    await idle();
    expect(rejected).toEqual([401]);
    cp.status = 503;
    await clock.advance(30_000);
    await idle();
    expect(rejected).toEqual([401]);
    expect(logs.join("")).toContain("endpoint report: HTTP 503");
    cp.status = 200;
    await clock.advance(30_000);
    await idle();
    expect(cp.reports).toHaveLength(3);
  });

  it("an older privhelper without StunProbe: the agent probes from its own ephemeral port", async () => {
    priv.servers.set("192.0.2.50:3478", "unimplemented");
    const sent: string[] = [];
    start({
      ephemeralProbe: async (ip, port, request) => {
        sent.push(`${ip}:${port}`);
        return { reply: stunReply(request, "198.18.1.2", 41000), sourcePort: 41000, fromMeshPort: false };
      },
    });
    await idle();
    expect(sent).toEqual(["192.0.2.50:3478"]);
    expect(cp.reports[0]?.body).toMatchObject({ public_endpoint: "198.18.1.2:51820", nat_type: "none" });
  });

  it("stops promptly on abort, also mid-sleep, and done never rejects", async () => {
    priv.servers.set("192.0.2.50:3478", { ip: "198.18.1.2", port: 51820 });
    const loop = start();
    await idle();
    ac.abort();
    await expect(loop.done).resolves.toBeUndefined();
  });
});

describe("resolveStunServer", () => {
  const resolve = async (h: string) => (h === "stun.test" ? "192.0.2.5" : "::1");
  it("keeps IPv4 literals, resolves names, refuses IPv6-only answers and bad ports", async () => {
    await expect(resolveStunServer("192.0.2.1:3478", resolve)).resolves.toEqual({ name: "192.0.2.1:3478", ip: "192.0.2.1", port: 3478 });
    await expect(resolveStunServer("stun.test:19302", resolve)).resolves.toMatchObject({ ip: "192.0.2.5", port: 19302 });
    await expect(resolveStunServer("v6.test:3478", resolve)).rejects.toMatchObject({ code: "not_found" });
    await expect(resolveStunServer("stun.test:0", resolve)).rejects.toMatchObject({ code: "invalid_argument" });
    await expect(resolveStunServer("stun.test", resolve)).rejects.toMatchObject({ code: "invalid_argument" });
  });
});
