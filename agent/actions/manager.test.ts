import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig, type Config } from "../config/schema.js";
import type { CpClient, CpRequest } from "../controlplane/http.js";
import { createLogger } from "../util/log.js";
import { AckedIds } from "./acked-ids.js";
import type { BuiltinHost } from "./builtins.js";
import { ActionManager, type HookRuntime } from "./manager.js";
import { ResultOutbox, type ActionResult } from "./outbox.js";

const log = createLogger({ name: "test", level: "silent" });
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const serviceCalls: string[] = [];
let noSystemd = false;
const host: BuiltinHost = {
  nodeId: () => "n_test",
  meshIp: () => "10.100.0.9",
  peerCount: () => 2,
  uptimeMs: () => 65_000,
  health: () => [],
  lastReconcile: () => ({ at: 1, ok: true }),
  peers: async () => [],
  reloadConfig: () => ({ applied: [], restart_required: [] }),
  reconnectMesh: async () => 3,
  pathTest: async (_ip, o) => ({ mode: o.mode, sent: 10, received: 10, loss_percent: 0, goodput_bps: 1 }),
  serviceControl: async (action, checkOnly) => {
    serviceCalls.push(`${action}${checkOnly ? "?" : ""}`);
    if (noSystemd) throw new Error("systemd is not the init system on this node (no /run/systemd/system): plexd's units cannot be restarted");
  },
  upgrade: async (version, checksum) => {
    serviceCalls.push(`install ${version} ${checksum.slice(0, 12)}`);
    if (version === "6.6.6") throw new Error("checksum mismatch: the downloaded artifact is sha256:aa, the request asked for sha256:bb; download discarded, nothing installed");
    return { libDir: "/usr/local/lib/plexd", changes: 12 };
  },
  maxOutputBytes: () => 65536,
  journal: async (args) => ({ exitCode: 0, stderr: "", stdout: ["-- Journal begins --", ...Array.from({ length: Number(args[args.indexOf("-n") + 1]) }, (_, i) => `2026-12-03T10:00:00+0000 host plexd[1]: line ${i} ${"x".repeat(i % 50)}`)].join("\n") + "\n" }),
  peerMeshIp: (id) => (id === "n_peer" ? "10.100.1.2" : undefined),
  ping: async (_a, count) => ({ sent: count, received: count - 1, min: 1, avg: 2, max: 3 }),
  traceroute: async (a) => ({ hops: [{ hop: 1, address: a, rtt_ms: 0.5 }], reached: true }),
  config: () => ({ config: { api: "https://cp.invalid", actions: { default_timeout: { text: "30s", ms: 30_000 } } }, sources: { api: "file" } }),
};

/** A control plane that records acks and results and answers `status`. */
function fakeCp(status = () => 200) {
  const posts: { path: string; body: Record<string, unknown> }[] = [];
  const cp = {
    baseUrl: new URL("https://cp.invalid/"),
    agentFor: () => undefined as never,
    request: async (r: CpRequest) => {
      posts.push({ path: r.path, body: r.body as Record<string, unknown> });
      return { status: status(), headers: {}, body: {} };
    },
  } as unknown as CpClient;
  return { cp, posts, results: () => posts.filter((p) => p.path.endsWith("/result")).map((p) => p.body as unknown as ActionResult) };
}

async function setup(o: { config?: Record<string, unknown>; hooks?: HookRuntime; dir?: string; cpStatus?: () => number } = {}) {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), "plexd-actions-"));
  if (!o.dir) dirs.push(dir);
  const config: Config = parseConfig({ api: "https://cp.invalid", data_dir: dir, ...o.config });
  const acked = await AckedIds.open(dir, Date.now, log);
  const cp = fakeCp(o.cpStatus);
  const sleep = (ms: number, s: AbortSignal) => new Promise<void>((res, rej) => {
    const t = setTimeout(res, Math.min(ms, 20));
    s.addEventListener("abort", () => (clearTimeout(t), rej(new Error("aborted"))), { once: true });
  });
  const transport = { cp: cp.cp, identity: () => ({ nodeId: "n_test", token: "t" }), log, sleep };
  const outbox = new ResultOutbox({ ...transport, dataDir: dir, writer: (await import("../util/atomic.js")).plainWriter });
  const acks: { execution_id: string; status: string; reason: string }[] = [];
  const m = new ActionManager({ config: () => config, acked, outbox, ack: async (b) => void acks.push(b), host, ...(o.hooks ? { hooks: o.hooks } : {}), log, now: Date.now });
  return { dir, m, acks, cp, outbox, acked };
}

const req = (id: string, action: string, extra: Record<string, unknown> = {}) => ({ execution_id: id, action, type: action.startsWith("hooks/") ? "hook" : "builtin", parameters: {}, ...extra });

async function waitFor<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("action admission", () => {
  it("accepts a known built-in, acks, runs it and delivers a persisted result", async () => {
    const { m, acks, cp, dir } = await setup();
    m.handleRequest("e1", req("exec_1", "system.info"));
    await m.settled();
    expect(acks).toEqual([{ execution_id: "exec_1", status: "accepted", reason: "" }]);
    const r = await waitFor(() => cp.results()[0]);
    expect(r).toMatchObject({ execution_id: "exec_1", status: "success", exit_code: 0, stderr: "", triggered_by: { type: "control_plane", session_id: "", user_id: "", email: "" } });
    expect(r.duration).toMatch(/^\d+\.\d{2}s$/);
    expect(JSON.parse(r.stdout)).toMatchObject({ node_id: "n_test", mesh_ip: "10.100.0.9", peer_count: 2, uptime: "1m5s", arch: process.arch });
    await waitFor(() => readdirSync(join(dir, "executions", "pending")).length === 0);
  });

  it("gives each bad request its reason and runs none of them", async () => {
    const { m, acks, cp } = await setup();
    const cases: [unknown, string][] = [
      [req("x1", "no.such_action"), "unknown_action"],
      [req("x2", "hooks/undeclared"), "unknown_action"],
      [{ ...req("x3", "system.info"), type: "hook" }, "unknown_action"],
      [req("x4", "system.info", { parameters: { extra: "1" } }), "invalid_parameters"],
      [req("x5", "health.check", { parameters: { include_peers: "yes" } }), "invalid_parameters"],
      [req("x6", "health.check", { parameters: { include_peers: 1 } }), "invalid_parameters"],
      [req("x6b", "diagnostics.ping_peer", { parameters: { peer_id: "n_peer", count: 21 } }), "invalid_parameters"],
      [req("x6c", "diagnostics.ping_peer", { parameters: { count: 2 } }), "invalid_parameters"],
      [req("x7", "health.check", { parameters: { include_peers: { nested: true } } }), "invalid_parameters"],
      [req("x8", "system.info", { timeout: "soon" }), "invalid_parameters"],
    ];
    for (const [i, [payload]] of cases.entries()) m.handleRequest(`e${i}`, payload);
    await m.settled();
    expect(acks.map((a) => [a.execution_id, a.reason])).toEqual(cases.map(([p, reason]) => [(p as { execution_id: string }).execution_id, reason]));
    expect(acks.every((a) => a.status === "rejected")).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(cp.results()).toEqual([]);
    expect(m.executions()).toEqual([]);
  });

  it("does not acknowledge a request without a usable execution_id (missing, 129 characters, a path)", async () => {
    const { m, acks } = await setup();
    for (const id of [undefined, "", "x".repeat(129), "a/b", "..", "a\nb"]) m.handleRequest("e", { ...req("", "system.info"), execution_id: id });
    m.handleRequest("e", "not an object");
    m.handleRequest("e", req("y".repeat(128), "no.such"));
    await m.settled();
    expect(acks).toEqual([{ execution_id: "y".repeat(128), status: "rejected", reason: "unknown_action" }]);
    expect(m.counts.dropped).toBe(7);
  });

  it("checks in the documented order: disabled before unknown, unknown before parameters", async () => {
    const off = await setup({ config: { actions: { enabled: false } } });
    off.m.handleRequest("e", req("a", "no.such", { parameters: { bad: {} } }));
    const hooksOff = await setup({ config: { hooks: { enabled: false } } });
    hooksOff.m.handleRequest("e", req("b", "hooks/x"));
    hooksOff.m.handleRequest("e", req("c", "system.info", { parameters: { x: 1 } }));
    await Promise.all([off.m.settled(), hooksOff.m.settled()]);
    expect(off.acks.map((a) => a.reason)).toEqual(["actions_disabled"]);
    expect(hooksOff.acks.map((a) => a.reason)).toEqual(["actions_disabled", "invalid_parameters"]);
  });

  it("admits exactly max_concurrent of 100 simultaneous requests", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const hooks: HookRuntime = {
      get: (name) => (name === "slow" ? { name: "hooks/slow", type: "hook", description: "", parameters: [], timeoutMs: 30_000 } : undefined),
      announced: () => [],
      verify: async () => ({ ok: true }),
      run: async () => (await gate, { exitCode: 0, stdout: "", stderr: "", timedOut: false }),
    };
    const { m, acks, cp } = await setup({ config: { actions: { max_concurrent: 3 } }, hooks });
    for (let i = 0; i < 100; i++) m.handleRequest(`e${i}`, req(`c${i}`, "hooks/slow"));
    await m.settled();
    expect(acks.filter((a) => a.status === "accepted").map((a) => a.execution_id)).toEqual(["c0", "c1", "c2"]);
    expect(acks.filter((a) => a.reason === "max_concurrent_reached")).toHaveLength(97);
    expect(m.running).toBe(3);
    release();
    await waitFor(() => cp.results().length === 3);
  });

  it("drops a replayed execution_id without a second ack, also after a restart", async () => {
    const a = await setup();
    a.m.handleRequest("e1", req("once", "system.info"));
    a.m.handleRequest("e1-dup", req("once", "system.info"));
    a.m.handleRequest("e2", req("rejected-once", "nope"));
    await a.m.settled();
    await waitFor(() => a.cp.results().length === 1);
    await a.acked.close();
    const b = await setup({ dir: a.dir });
    b.m.handleRequest("e1", req("once", "system.info"));
    b.m.handleRequest("e2", req("rejected-once", "nope"));
    await b.m.settled();
    expect(a.acks.map((x) => x.execution_id)).toEqual(["once", "rejected-once"]);
    expect(b.acks).toEqual([]);
    expect(b.m.counts.dropped).toBe(2);
    // Also when the memory never got its snapshot (a kill): the journal alone carries it.
    const c = await setup({ dir: a.dir });
    c.m.handleRequest("e3", req("killed", "system.info"));
    await c.m.settled();
    const d = await setup({ dir: a.dir });
    d.m.handleRequest("e3", req("killed", "system.info"));
    await d.m.settled();
    expect(d.acks).toEqual([]);
    expect(readFileSync(join(a.dir, "executions", "acked.json"), "utf8")).toContain("once");
  });

  it("passes parameter values with shell metacharacters and newlines through as text", async () => {
    const seen: Record<string, string>[] = [];
    const hooks: HookRuntime = {
      get: () => ({ name: "hooks/echo", type: "hook", description: "", parameters: [{ name: "msg", type: "string", required: true, description: "" }, { name: "n", type: "int", required: false, default: "7", description: "" }], timeoutMs: 1000 }),
      announced: () => [],
      verify: async () => ({ ok: true }),
      run: async (_n, r) => (seen.push({ ...r.params }), { exitCode: 3, stdout: "out", stderr: "err", timedOut: false }),
    };
    const { m, acks, cp } = await setup({ hooks });
    const msg = "$(rm -rf /); `id` && echo 'x' | cat > /tmp/p\nsecond line";
    m.handleRequest("e", req("m1", "hooks/echo", { parameters: { msg } }));
    m.handleRequest("e", req("m2", "hooks/echo", { parameters: { msg: "a\0b" } }));
    m.handleRequest("e", req("m3", "hooks/echo", { parameters: { msg: "x", n: "9223372036854775808" } }));
    m.handleRequest("e", req("m4", "hooks/echo", {}));
    await m.settled();
    expect(acks.map((a) => a.reason)).toEqual(["", "invalid_parameters", "invalid_parameters", "invalid_parameters"]);
    const r = await waitFor(() => cp.results()[0]);
    expect(seen).toEqual([{ msg, n: "7" }]);
    expect(r).toMatchObject({ status: "failure", exit_code: 3, stdout: "out", stderr: "err" });
  });

  it("rejects a hook whose integrity check fails, before the ack", async () => {
    const hooks: HookRuntime = {
      get: () => ({ name: "hooks/h", type: "hook", description: "", parameters: [], timeoutMs: 1000 }),
      announced: () => [],
      verify: async () => ({ ok: false, detail: "checksum mismatch" }),
      run: async () => {
        throw new Error("must not run");
      },
    };
    const { m, acks } = await setup({ hooks });
    m.handleRequest("e", req("i1", "hooks/h"));
    await m.settled();
    expect(acks).toEqual([{ execution_id: "i1", status: "rejected", reason: "integrity_violation" }]);
  });

  it("reports timeout, error and cancelled with exit code -1", async () => {
    const hooks: HookRuntime = {
      get: (name) => ({ name: `hooks/${name}`, type: "hook", description: "", parameters: [], timeoutMs: 100 }),
      announced: () => [],
      verify: async () => ({ ok: true }),
      run: async (name, _r, signal) => {
        if (name === "boom") throw new Error("sandbox setup failed");
        if (name === "late") return { exitCode: 137, stdout: "", stderr: "", timedOut: true };
        await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
        return { exitCode: 143, stdout: "", stderr: "", timedOut: false };
      },
    };
    const { m, cp, acks } = await setup({ hooks, config: { actions: { drain_timeout: "1s" } } });
    m.handleRequest("e", req("t1", "hooks/late"));
    m.handleRequest("e", req("t2", "hooks/boom"));
    m.handleRequest("e", req("t3", "hooks/forever", { timeout: "1h" }));
    await m.settled();
    await waitFor(() => cp.results().length === 2);
    await m.drain();
    await waitFor(() => cp.results().length === 3);
    const by = Object.fromEntries(cp.results().map((r) => [r.execution_id, r]));
    expect(by.t1).toMatchObject({ status: "timeout", exit_code: -1 });
    expect(by.t2).toMatchObject({ status: "error", exit_code: -1, stderr: "sandbox setup failed\n" });
    expect(by.t3).toMatchObject({ status: "cancelled", exit_code: -1 });
    // And nothing is admitted once draining.
    m.handleRequest("e", req("t4", "system.info"));
    await m.settled();
    expect(acks.at(-1)).toEqual({ execution_id: "t4", status: "rejected", reason: "shutting_down" });
  });
});

describe("built-ins", () => {
  it("config.dump, mesh.reconnect, ping_peer and traceroute_peer answer with their documents", async () => {
    const { m, cp } = await setup();
    m.handleRequest("e", req("cd", "config.dump"));
    m.handleRequest("e", req("mr", "mesh.reconnect"));
    m.handleRequest("e", req("pp", "diagnostics.ping_peer", { parameters: { peer_id: "n_peer", count: 4 } }));
    m.handleRequest("e", req("tr", "diagnostics.traceroute_peer", { parameters: { peer_id: "n_peer" } }));
    m.handleRequest("e", req("pu", "diagnostics.ping_peer", { parameters: { peer_id: "n_nobody" } }));
    await m.settled();
    const r = await waitFor(() => (cp.results().length === 5 ? cp.results() : undefined));
    const by = Object.fromEntries(r.filter((x) => x.stdout !== "").map((x) => [x.execution_id, JSON.parse(x.stdout) as unknown]));
    expect(by.cd).toEqual({ api: { value: "https://cp.invalid", source: "file" }, "actions.default_timeout": { value: "30s", source: "default" } });
    expect(by.mr).toEqual({ peers_configured: 3 });
    expect(by.pp).toEqual({ peer_id: "n_peer", mesh_ip: "10.100.1.2", sent: 4, received: 3, loss_percent: 25, rtt_ms: { min: 1, avg: 2, max: 3 } });
    expect(by.tr).toEqual({ peer_id: "n_peer", mesh_ip: "10.100.1.2", hops: [{ hop: 1, address: "10.100.1.2", rtt_ms: 0.5 }] });
    expect(r.find((x) => x.execution_id === "pu")).toMatchObject({ status: "error", exit_code: -1, stderr: "unknown peer n_nobody\n" });
  });
});

describe("service.restart", () => {
  it("restarts only after its result is delivered, and reports error where it cannot", async () => {
    serviceCalls.length = 0;
    const { m, cp } = await setup();
    m.handleRequest("e", req("sr", "service.restart"));
    await m.settled();
    const r = await waitFor(() => cp.results()[0]);
    expect(r).toMatchObject({ status: "success", exit_code: 0 });
    await waitFor(() => serviceCalls.length === 2);
    expect(serviceCalls).toEqual(["restart_agent?", "restart_agent"]);
    const resultAt = cp.posts.findIndex((p) => p.path.endsWith("/result"));
    expect(resultAt).toBeGreaterThan(-1);

    noSystemd = true;
    try {
      const b = await setup();
      b.m.handleRequest("e", req("sr2", "service.restart"));
      await b.m.settled();
      const e = await waitFor(() => b.cp.results()[0]);
      expect(e).toMatchObject({ status: "error", exit_code: -1 });
      expect(e.stderr).toContain("systemd is not the init system");
      expect(serviceCalls).toEqual(["restart_agent?", "restart_agent", "restart_agent?"]);
    } finally {
      noSystemd = false;
    }
  });
});

describe("service.upgrade", () => {
  const sum = "sha256:" + "ab".repeat(32);
  it("installs, answers {from, to, checksum}, and restarts both units only after the result is delivered", async () => {
    serviceCalls.length = 0;
    const { m, cp } = await setup();
    m.handleRequest("e", req("up1", "service.upgrade", { parameters: { version: "1.5.0", checksum: "AB".repeat(32) } }));
    await m.settled();
    const r = await waitFor(() => cp.results()[0]);
    expect(r).toMatchObject({ status: "success", exit_code: 0 });
    expect(JSON.parse(r.stdout)).toEqual({ from: expect.any(String), to: "1.5.0", checksum: sum });
    await waitFor(() => serviceCalls.length === 3);
    expect(serviceCalls).toEqual(["install 1.5.0 sha256:ababa", "restart_all?", "restart_all"]);
  });

  it("where the units cannot be restarted: installed, status error saying so, the document still on stdout", async () => {
    serviceCalls.length = 0;
    noSystemd = true;
    try {
      const { m, cp } = await setup();
      m.handleRequest("e", req("up2", "service.upgrade", { parameters: { version: "1.5.0", checksum: sum } }));
      await m.settled();
      const r = await waitFor(() => cp.results()[0]);
      expect(r).toMatchObject({ status: "error", exit_code: -1 });
      expect(JSON.parse(r.stdout)).toMatchObject({ to: "1.5.0", checksum: sum });
      expect(r.stderr).toMatch(/plexd 1\.5\.0 is installed in \/usr\/local\/lib\/plexd, but it cannot be started from here: systemd is not the init system.*Restart plexd-privhelper\.service and plexd\.service/);
      expect(serviceCalls).toEqual(["install 1.5.0 sha256:ababa", "restart_all?"]);
    } finally {
      noSystemd = false;
    }
  });

  it("a failed download or install is status error with its reason, and nothing is restarted", async () => {
    serviceCalls.length = 0;
    const { m, cp } = await setup();
    m.handleRequest("e", req("up3", "service.upgrade", { parameters: { version: "6.6.6", checksum: sum } }));
    await m.settled();
    const r = await waitFor(() => cp.results()[0]);
    expect(r).toMatchObject({ status: "error", exit_code: -1, stdout: "" });
    expect(r.stderr).toContain("checksum mismatch");
    expect(serviceCalls).toEqual(["install 6.6.6 sha256:ababa"]);
  });

  it("refuses a missing or malformed version or checksum at admission", async () => {
    const { m, acks } = await setup();
    m.handleRequest("e", req("up4", "service.upgrade", { parameters: { version: "../1", checksum: "sha256:12" } }));
    m.handleRequest("e", req("up5", "service.upgrade", { parameters: {} }));
    await m.settled();
    expect(acks.map((a) => a.reason)).toEqual(["invalid_parameters", "invalid_parameters"]);
  });
});

describe("logs.snapshot", () => {
  it("packs the newest journal lines, gzip+base64, dropping the oldest to fit", async () => {
    const { packLines } = await import("./builtins.js");
    const { gunzipSync } = await import("node:zlib");
    const lines = Array.from({ length: 5000 }, (_, i) => `${i} ${Math.random().toString(36).repeat(3)}`);
    const all = packLines(lines.slice(0, 10), 65536);
    expect(all).toMatchObject({ lines: 10, truncated: false });
    const cut = packLines(lines, 4096);
    expect(cut.truncated).toBe(true);
    expect(cut.data.length).toBeLessThanOrEqual(4096);
    const text = gunzipSync(Buffer.from(cut.data, "base64")).toString().trimEnd().split("\n");
    expect(text).toEqual(lines.slice(lines.length - cut.lines));
    expect(packLines(lines, 4096 + 200).lines).toBeGreaterThanOrEqual(cut.lines);
  });

  it("runs journalctl for both units and checks its parameters", async () => {
    const { m, cp, acks } = await setup();
    m.handleRequest("e", req("ls", "logs.snapshot", { parameters: { lines: 200, since: "30m" } }));
    m.handleRequest("e", req("lb", "logs.snapshot", { parameters: { since: "yesterday" } }));
    m.handleRequest("e", req("lc", "logs.snapshot", { parameters: { lines: 10001 } }));
    await m.settled();
    expect(acks.map((a) => a.reason)).toEqual(["", "invalid_parameters", "invalid_parameters"]);
    const r = await waitFor(() => cp.results()[0]);
    const doc = JSON.parse(r.stdout) as { encoding: string; lines: number; truncated: boolean; data: string };
    expect(doc).toMatchObject({ encoding: "gzip+base64", lines: 200, truncated: false });
  });
});

describe("result delivery", () => {
  it("keeps a result on disk while the control plane is down and delivers it after a restart", async () => {
    let up = false;
    const a = await setup({ cpStatus: () => (up ? 200 : 503) });
    a.m.handleRequest("e", req("r1", "system.info"));
    await a.m.settled();
    await waitFor(() => a.cp.posts.filter((p) => p.path.endsWith("/result")).length >= 2);
    await a.outbox.close();
    expect(readdirSync(join(a.dir, "executions", "pending"))).toEqual(["r1.json"]);
    expect(readFileSync(join(a.dir, "executions", "pending", "r1.json")).length).toBeGreaterThan(0);
    up = true;
    const b = await setup({ dir: a.dir });
    await b.outbox.resume();
    const r = await waitFor(() => b.cp.results()[0]);
    expect(r).toMatchObject({ execution_id: "r1", status: "success" });
    await waitFor(() => readdirSync(join(a.dir, "executions", "pending")).length === 0);
  });

  it("drops a result the control plane refuses for good (404)", async () => {
    const { m, cp, dir } = await setup({ cpStatus: () => 404 });
    m.handleRequest("e", req("gone", "system.info"));
    await m.settled();
    await waitFor(() => cp.posts.some((p) => p.path.endsWith("/result")));
    await waitFor(() => readdirSync(join(dir, "executions", "pending")).length === 0);
    expect(cp.posts.filter((p) => p.path.endsWith("/result"))).toHaveLength(1);
  });
});
