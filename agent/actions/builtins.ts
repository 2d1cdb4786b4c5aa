import { readdir, readFile, statfs } from "node:fs/promises";
import os from "node:os";
import { gzipSync } from "node:zlib";
import { parseDuration } from "../../proto/lib/duration.js";
import { formatSeconds } from "../../proto/lib/duration.js";
import { version } from "../../proto/lib/version.js";
import type { HealthCondition } from "../health/registry.js";
import type { ActionDef, ParamDef } from "./catalog.js";
import { serviceUpgrade } from "./upgrade.js";

// Built-in actions (docs/actions.md "Built-in actions"): each writes one JSON document to
// stdout. They run inside the agent, need no privilege, and an exception becomes status `error`.

/** What the running agent lends a built-in; everything is read when the action runs. */
export interface BuiltinHost {
  nodeId(): string;
  meshIp(): string;
  peerCount(): number;
  uptimeMs(): number;
  health(): readonly HealthCondition[];
  lastReconcile(): { at: number; ok: boolean } | undefined;
  /** Live handshake data per peer, when privhelper answers. */
  peers(signal: AbortSignal): Promise<{ peer_id: string; handshake_age_s: number | null }[]>;
  /** service.reload_config; throws with every problem of an invalid file. */
  reloadConfig(): { applied: string[]; restart_required: string[] };
  /** Mesh IP of a peer in the desired state, or undefined. */
  peerMeshIp(peerId: string): string | undefined;
  /** privhelper PingPeers / Traceroute over the mesh interface. */
  ping(address: string, count: number, signal: AbortSignal): Promise<{ sent: number; received: number; min: number; avg: number; max: number }>;
  traceroute(address: string, maxHops: number, signal: AbortSignal): Promise<{ hops: { hop: number; address: string; rtt_ms: number }[]; reached: boolean }>;
  /** journalctl with these arguments (argv, no shell). */
  journal(args: readonly string[], signal: AbortSignal): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** diagnostics.path_test against a peer's responder. */
  pathTest(peerIp: string, o: { mode: "udp_echo" | "throughput"; durationMs: number; rate: number }, signal: AbortSignal): Promise<unknown>;
  /** privhelper ServiceControl; `checkOnly` tells whether it could run now. */
  serviceControl(action: "restart_agent" | "restart_all", checkOnly: boolean): Promise<void>;
  /** service.upgrade: download, verify and install a release (privhelper InstallUpgrade). */
  upgrade(version: string, checksum: string, signal: AbortSignal): Promise<{ libDir: string; changes: number }>;
  /** actions.max_output_bytes */
  maxOutputBytes(): number;
  /** mesh.reconnect: recreate the interface with the whole peer set; the number of peers configured. */
  reconnectMesh(): Promise<number>;
  /** The running configuration and the source of each key. */
  config(): { config: unknown; sources: Readonly<Record<string, string>> };
}

export interface BuiltinRun {
  exitCode: number;
  document: unknown;
  /** Runs once the result is delivered (service.restart restarts the agent only then). */
  after?: () => Promise<void>;
  /** Status `error` with this detail as stderr, the document still on stdout (service.upgrade installed but cannot restart). */
  error?: string;
}

export interface Builtin extends ActionDef {
  run(params: Readonly<Record<string, string>>, host: BuiltinHost, signal: AbortSignal): Promise<BuiltinRun>;
}

const p = (name: string, type: ParamDef["type"], description: string, extra: Partial<ParamDef> = {}): ParamDef => ({ name, type, required: false, description, ...extra });

async function cpuModel(): Promise<string> {
  return os.cpus()[0]?.model ?? (await readFile("/proc/cpuinfo", "utf8").catch(() => "")).match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "";
}

const systemInfo: Builtin = {
  name: "system.info",
  type: "builtin",
  description: "Host, kernel, runtime and plexd facts of this node",
  parameters: [],
  async run(_params, host) {
    return {
      exitCode: 0,
      document: {
        hostname: os.hostname(),
        os: `${os.type()} ${(await readFile("/etc/os-release", "utf8").catch(() => "")).match(/^PRETTY_NAME="?([^"\n]*)"?$/m)?.[1] ?? ""}`.trim(),
        kernel: os.release(),
        arch: process.arch,
        cpu_model: await cpuModel(),
        cpu_count: os.availableParallelism(),
        memory_total: os.totalmem(),
        runtime_version: process.version,
        plexd_version: version,
        node_id: host.nodeId(),
        mesh_ip: host.meshIp(),
        peer_count: host.peerCount(),
        uptime: formatSeconds(host.uptimeMs()),
      },
    };
  },
};

/** Health conditions that fail or warn each check of health.check. */
const checkConditions: Record<string, readonly string[]> = {
  registered: ["identity_rejected"],
  sse_connected: ["control_plane_disconnected", "events_not_durable"],
  heartbeat: ["heartbeat_failing"],
  reconcile: [],
  privhelper: ["privhelper_unavailable"],
  interface_up: ["mesh_apply_failed"],
  firewall_applied: ["firewall_apply_failed"],
  integrity: ["integrity_violation", "events_rejected"],
  node_api: ["node_api_unavailable"],
};

type CheckStatus = "pass" | "warn" | "fail";

const healthCheck: Builtin = {
  name: "health.check",
  type: "builtin",
  description: "The agent's own checks; exit code 0 healthy, 1 degraded, 2 unhealthy",
  parameters: [p("include_peers", "bool", "also list each peer's handshake age", { default: "false" })],
  async run(params, host, signal) {
    const conditions = host.health();
    const checks = Object.entries(checkConditions).map(([name, codes]) => {
      const hit = conditions.filter((c) => codes.includes(c.code) && c.severity !== "info");
      const status: CheckStatus = hit.some((c) => c.severity === "critical") ? "fail" : hit.length > 0 ? "warn" : "pass";
      return { name, status, detail: hit.map((c) => c.text).join("; ") };
    });
    const rec = host.lastReconcile();
    const reconcile = checks.find((c) => c.name === "reconcile")!;
    if (rec === undefined) Object.assign(reconcile, { status: "warn", detail: "no reconcile cycle finished yet" });
    else if (!rec.ok) Object.assign(reconcile, { status: "warn", detail: `last cycle at ${new Date(rec.at).toISOString()} did not complete` });
    const status = checks.some((c) => c.status === "fail") ? "unhealthy" : checks.some((c) => c.status === "warn") ? "degraded" : "healthy";
    const peers = params.include_peers === "true" ? (await host.peers(signal)).map((x) => ({ ...x, rtt_ms: null })) : undefined;
    return { exitCode: { healthy: 0, degraded: 1, unhealthy: 2 }[status], document: { status, checks, ...(peers ? { peers } : {}) } };
  },
};

const reloadConfig: Builtin = {
  name: "service.reload_config",
  type: "builtin",
  description: "Re-read the configuration file; an invalid file changes nothing (exit 1)",
  parameters: [],
  async run(_params, host) {
    try {
      return { exitCode: 0, document: host.reloadConfig() };
    } catch (err) {
      return { exitCode: 1, document: { error: err instanceof Error ? err.message : String(err) } };
    }
  },
};

async function cpuPercent(signal: AbortSignal): Promise<number> {
  const sample = () => os.cpus().reduce((a, c) => ({ idle: a.idle + c.times.idle, total: a.total + Object.values(c.times).reduce((x, y) => x + y, 0) }), { idle: 0, total: 0 });
  const a = sample();
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 200);
    signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });
  const b = sample();
  const total = b.total - a.total;
  return total > 0 ? Math.round((1 - (b.idle - a.idle) / total) * 1000) / 10 : 0;
}

async function disks(): Promise<{ mount: string; used: number; total: number }[]> {
  const mounts = (await readFile("/proc/mounts", "utf8").catch(() => ""))
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f.length > 2 && /^\/dev\//.test(f[0]!))
    .map((f) => f[1]!.replace(/\\040/g, " "));
  const out = [];
  for (const mount of [...new Set(mounts)].slice(0, 32)) {
    const s = await statfs(mount).catch(() => undefined);
    if (s) out.push({ mount, used: (s.blocks - s.bfree) * s.bsize, total: s.blocks * s.bsize });
  }
  return out;
}

async function routes(): Promise<{ destination: string; gateway: string; interface: string }[]> {
  const hex = (h: string) => [0, 1, 2, 3].map((i) => parseInt(h.slice(6 - 2 * i, 8 - 2 * i), 16)).join(".");
  return (await readFile("/proc/net/route", "utf8").catch(() => ""))
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 8)
    .map((f) => ({ destination: `${hex(f[1]!)}/${maskBits(f[7]!)}`, gateway: hex(f[2]!), interface: f[0]! }));
}

/** Set bits of a /proc/net/route mask (host byte order: the count is the same). */
function maskBits(hexMask: string): number {
  return [...parseInt(hexMask, 16).toString(2)].filter((c) => c === "1").length;
}

/** Top processes by CPU time share since they started (one /proc pass, no sampling wait). */
async function processes(): Promise<{ pid: number; user: string; cpu_percent: number; rss: number; command: string }[]> {
  const hz = 100;
  const uptime = Number((await readFile("/proc/uptime", "utf8").catch(() => "0")).split(" ")[0]);
  const page = 4096;
  const users = new Map((await readFile("/etc/passwd", "utf8").catch(() => "")).split("\n").map((l) => l.split(":")).map((f) => [f[2] ?? "", f[0] ?? ""] as const));
  const out = [];
  for (const name of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cpuS = (Number(f[11]) + Number(f[12])) / hz;
      const startS = Number(f[19]) / hz;
      const status = await readFile(`/proc/${name}/status`, "utf8");
      const uid = status.match(/^Uid:\s+(\d+)/m)?.[1] ?? "";
      out.push({ pid: Number(name), user: users.get(uid) ?? uid, cpu_percent: uptime > startS ? Math.round((cpuS / (uptime - startS)) * 1000) / 10 : 0, rss: Number(f[21]) * page, command: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")) });
    } catch {
      // the process ended meanwhile
    }
  }
  return out.sort((a, b) => b.cpu_percent - a.cpu_percent).slice(0, 20);
}

const diagnosticsCollect: Builtin = {
  name: "diagnostics.collect",
  type: "builtin",
  description: "CPU, load, memory, disks, and optionally network and top processes",
  parameters: [p("include_network", "bool", "interfaces, routes and mesh facts", { default: "true" }), p("include_processes", "bool", "the top 20 processes by CPU", { default: "true" })],
  async run(params, host, signal) {
    const doc: Record<string, unknown> = {
      cpu_percent: await cpuPercent(signal),
      load_avg: os.loadavg(),
      memory: { used: os.totalmem() - os.freemem(), total: os.totalmem() },
      disk: await disks(),
    };
    if (params.include_network === "true") {
      const interfaces = Object.entries(os.networkInterfaces()).map(([name, addrs]) => ({ name, addresses: (addrs ?? []).map((a) => a.cidr ?? a.address) }));
      doc.network = { interfaces, routes: await routes(), mesh: { node_id: host.nodeId(), mesh_ip: host.meshIp(), peer_count: host.peerCount() } };
    }
    if (params.include_processes === "true") doc.processes = await processes();
    return { exitCode: 0, document: doc };
  },
};

/** Leaves of the parsed configuration: durations and sizes by their text, lists and maps whole. */
function flatten(v: unknown, path: string[], sources: Readonly<Record<string, string>>, out: Record<string, { value: unknown; source: string }>): void {
  const key = path.join(".");
  const rec = typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  if (rec !== undefined && !("text" in rec) && !(key in sources)) {
    for (const [k, x] of Object.entries(rec)) flatten(x, [...path, k], sources, out);
    return;
  }
  out[key] = { value: rec !== undefined && "text" in rec ? rec.text : v, source: sources[key] ?? "default" };
}

const configDump: Builtin = {
  name: "config.dump",
  type: "builtin",
  description: "The running configuration, each key with its source (default, file, env, flag)",
  parameters: [],
  async run(_params, host) {
    // The configuration holds paths to token files, never their contents.
    const { config, sources } = host.config();
    const out: Record<string, { value: unknown; source: string }> = {};
    flatten(config, [], sources, out);
    return { exitCode: 0, document: out };
  },
};

const meshReconnect: Builtin = {
  name: "mesh.reconnect",
  type: "builtin",
  description: "Delete and recreate the mesh interface with the full peer set, apply the firewall again, then reconcile",
  parameters: [],
  async run(_params, host) {
    return { exitCode: 0, document: { peers_configured: await host.reconnectMesh() } };
  },
};

function peerAddress(host: BuiltinHost, peerId: string): string {
  const ip = host.peerMeshIp(peerId);
  if (ip === undefined) throw new Error(`unknown peer ${peerId}`);
  return ip;
}

const pingPeer: Builtin = {
  name: "diagnostics.ping_peer",
  type: "builtin",
  description: "ICMP echo to a peer's mesh IP over the tunnel; exit code 1 without any reply",
  parameters: [p("peer_id", "string", "the peer's node id", { required: true }), p("count", "int", "echo requests", { default: "4", min: 1, max: 20 })],
  async run(params, host, signal) {
    const mesh_ip = peerAddress(host, params.peer_id!);
    const r = await host.ping(mesh_ip, Number(params.count), signal);
    const loss = r.sent === 0 ? 100 : Math.round(((r.sent - r.received) / r.sent) * 1000) / 10;
    return { exitCode: r.received > 0 ? 0 : 1, document: { peer_id: params.peer_id, mesh_ip, sent: r.sent, received: r.received, loss_percent: loss, rtt_ms: { min: r.min, avg: r.avg, max: r.max } } };
  },
};

const traceroutePeer: Builtin = {
  name: "diagnostics.traceroute_peer",
  type: "builtin",
  description: "The path to a peer's mesh IP; exit code 1 when it was not reached",
  parameters: [p("peer_id", "string", "the peer's node id", { required: true }), p("max_hops", "int", "hops at most", { default: "30", min: 1, max: 64 })],
  async run(params, host, signal) {
    const mesh_ip = peerAddress(host, params.peer_id!);
    const r = await host.traceroute(mesh_ip, Number(params.max_hops), signal);
    return { exitCode: r.reached ? 0 : 1, document: { peer_id: params.peer_id, mesh_ip, hops: r.hops } };
  },
};

/** The newest lines whose gzip+base64 fits `budget` bytes (fewer lines, not a cut line, when it does not). */
export function packLines(lines: readonly string[], budget: number): { lines: number; truncated: boolean; data: string } {
  const pack = (n: number) => gzipSync(Buffer.from(lines.slice(lines.length - n).join("\n") + (n > 0 ? "\n" : ""))).toString("base64");
  let data = pack(lines.length);
  if (data.length <= budget) return { lines: lines.length, truncated: false, data };
  // Binary search for the most lines that fit: gzip size grows with the line count.
  let [lo, hi] = [0, lines.length];
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (pack(mid).length <= budget) lo = mid;
    else hi = mid - 1;
  }
  data = pack(lo);
  return { lines: lo, truncated: true, data };
}

const logsSnapshot: Builtin = {
  name: "logs.snapshot",
  type: "builtin",
  description: "The latest journal lines of plexd and plexd-privhelper, gzip+base64; oldest lines dropped to fit the output limit",
  parameters: [
    p("lines", "int", "lines at most", { default: "1000", min: 1, max: 10_000 }),
    p("since", "string", "only lines this recent, a duration such as 30m", { pattern: { re: /^(?:\d+(?:ms|s|m|h))+$/, message: "must be a duration such as 30m or 1h" } }),
  ],
  async run(params, host, signal) {
    const since = params.since === undefined ? undefined : parseDuration(params.since);
    const args = ["-u", "plexd.service", "-u", "plexd-privhelper.service", "-n", params.lines!, "--no-pager", "-q", "-o", "short-iso", ...(since === undefined ? [] : ["--since", `@${Math.floor((Date.now() - since) / 1000)}`])];
    const r = await host.journal(args, signal);
    if (r.exitCode !== 0) throw new Error(`journalctl failed (exit ${r.exitCode}): ${r.stderr.trim().slice(0, 300)}`);
    const lines = r.stdout.split("\n").filter((l) => l !== "" && !l.startsWith("-- "));
    // Room for the document around `data`.
    const packed = packLines(lines, host.maxOutputBytes() - 128);
    return { exitCode: 0, document: { encoding: "gzip+base64", ...packed } };
  },
};

const pathTest: Builtin = {
  name: "diagnostics.path_test",
  type: "builtin",
  description: "UDP test to a peer's agent over the mesh: RTT, jitter and loss (udp_echo) or goodput (throughput); the peer caps the rate",
  parameters: [
    p("peer_id", "string", "the peer's node id", { required: true }),
    p("mode", "string", "udp_echo or throughput", { default: "udp_echo", pattern: { re: /^(?:udp_echo|throughput)$/, message: "must be udp_echo or throughput" } }),
    p("duration", "string", "how long, e.g. 5s (at most 60s)", { default: "5s", pattern: { re: /^(?:(?:[1-9]|[1-5]\d|60)s|[1-9]\d{2,3}ms)$/, message: "must be a duration from 100ms to 60s, e.g. 5s" } }),
    p("rate", "int", "packets per second", { default: "50", min: 1, max: 100_000 }),
  ],
  async run(params, host, signal) {
    const mesh_ip = peerAddress(host, params.peer_id!);
    const durationMs = parseDuration(params.duration!) ?? 5000;
    const r = (await host.pathTest(mesh_ip, { mode: params.mode as "udp_echo" | "throughput", durationMs, rate: Number(params.rate) }, signal)) as { received: number };
    return { exitCode: r.received > 0 ? 0 : 1, document: { peer_id: params.peer_id, mesh_ip, duration: params.duration, rate: Number(params.rate), ...r } };
  },
};

const serviceRestart: Builtin = {
  name: "service.restart",
  type: "builtin",
  description: "Restart the agent (plexd.service) once this result is delivered",
  parameters: [],
  async run(_params, host) {
    // Refused up front where it cannot happen (no systemd): status error with the reason.
    await host.serviceControl("restart_agent", true);
    return { exitCode: 0, document: { restarting: ["plexd.service"] }, after: () => host.serviceControl("restart_agent", false) };
  },
};

/** The built-ins this agent runs, by name. */
export const builtins: ReadonlyMap<string, Builtin> = new Map([systemInfo, healthCheck, diagnosticsCollect, pingPeer, traceroutePeer, pathTest, reloadConfig, configDump, meshReconnect, logsSnapshot, serviceRestart, serviceUpgrade].map((b) => [b.name, b]));
