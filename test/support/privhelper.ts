// Fixtures for privhelper unit tests: a described Host, the exact commands privhelper's OS
// layer runs (as transcript entries), the text the real tools print for them, and a log sink.
import { execFileSync } from "node:child_process";
import { Writable } from "node:stream";
import type { Host } from "../../privhelper/os/host.js";
import { createLogger, type Logger } from "../../privhelper/log.js";
import { ok, fail, type TranscriptEntry } from "./transcript.js";
import type { RunResult } from "../../privhelper/os/run.js";

/** A canonical 32-byte WireGuard key (base64) made of byte `n`. */
export const key = (n: number): string => Buffer.alloc(32, n).toString("base64");

/** A logger whose lines the test can read back. */
export function captureLog(): { log: Logger; lines: Record<string, unknown>[]; text: () => string } {
  const lines: Record<string, unknown>[] = [];
  let raw = "";
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: createLogger("debug", sink), lines, text: () => raw };
}

/** A host described by the test; every fact can change while the test runs. */
export class FakeHost implements Host {
  files = new Set<string>();
  bins = new Set<string>();
  procs: { pid: number; argv: string[]; netns?: string }[] = [];
  readonly killed: { pid: number; signal: NodeJS.Signals }[] = [];
  /** Whether a SIGTERM ends the process (wireguard-go removes its link and socket itself). */
  diesOnTerm = true;
  /** Called by kill(), e.g. to make a link disappear with its wireguard-go. */
  onKill: (pid: number) => void = () => undefined;

  constructor(o: { files?: string[]; bins?: string[] } = {}) {
    for (const f of o.files ?? []) this.files.add(f);
    for (const b of o.bins ?? []) this.bins.add(b);
  }
  exists(path: string) {
    return Promise.resolve(this.files.has(path));
  }
  which(name: string) {
    return Promise.resolve(this.bins.has(name) ? `/usr/bin/${name}` : undefined);
  }
  processes() {
    return Promise.resolve(this.procs.map(({ pid, argv }) => ({ pid, argv })));
  }
  netns(pid: number | "self") {
    return Promise.resolve(pid === "self" ? "net:[1]" : (this.procs.find((p) => p.pid === pid)?.netns ?? "net:[1]"));
  }
  kill(pid: number, signal: NodeJS.Signals) {
    if (!this.procs.some((p) => p.pid === pid)) return false;
    this.killed.push({ pid, signal });
    if (signal === "SIGKILL" || this.diesOnTerm) {
      this.procs = this.procs.filter((p) => p.pid !== pid);
      this.onKill(pid);
    }
    return true;
  }
  sleep() {
    return Promise.resolve();
  }
}

// ---- ip ------------------------------------------------------------------------------------

export interface LinkState {
  kind?: string;
  up: boolean;
  mtu: number;
  /** Interface addresses as CIDRs with host bits; link-local IPv6 ones are added as the kernel does. */
  addrs: string[];
}

/** One route as `ip -N -d -j route show table all` prints it. */
export interface RouteRow {
  dst: string;
  dev?: string;
  /** Routing protocol number: 2 kernel, 3 boot (ip route add), 80 privhelper. */
  proto?: number;
  table?: number;
  type?: number;
}

/** The one line `addr show dev NAME` prints with `-N -d -j`. */
export function linkJson(name: string, l: LinkState): string {
  const addr = (cidr: string, scope: string) => {
    const [local = "", len = ""] = cidr.split("/");
    return { family: local.includes(":") ? "inet6" : "inet", local, prefixlen: Number(len), scope, valid_life_time: 4294967295, preferred_life_time: 4294967295 };
  };
  return JSON.stringify([
    {
      ifindex: 7,
      ifname: name,
      flags: ["POINTOPOINT", "NOARP", ...(l.up ? ["UP", "LOWER_UP"] : [])],
      mtu: l.mtu,
      qdisc: "noqueue",
      operstate: l.up ? "UNKNOWN" : "DOWN",
      group: "0",
      link_type: "none",
      linkinfo: { info_kind: l.kind ?? "wireguard" },
      addr_info: [...l.addrs.map((a) => addr(a, "0")), ...(l.up ? [addr("fe80::7/64", "253")] : [])],
    },
  ]);
}

/** The line `route show table all root 0.0.0.0/0` (or `::/0`) prints, with kernel rows of other tables mixed in. */
export function routesJson(rows: readonly RouteRow[], v6: boolean): string {
  const local = v6 ? { type: "2", dst: "::1", dev: "lo", table: "255", protocol: "2", scope: "0", metric: 0, flags: [] } : { type: "2", dst: "127.0.0.1", dev: "lo", table: "255", protocol: "2", scope: "254", prefsrc: "127.0.0.1", flags: [] };
  const out = rows
    .filter((r) => r.dst.includes(":") === v6)
    .map((r) => {
      const bare = r.dst === "0.0.0.0/0" || r.dst === "::/0" ? "default" : r.dst.endsWith(v6 ? "/128" : "/32") ? r.dst.replace(/\/\d+$/, "") : r.dst;
      return { type: String(r.type ?? 1), dst: bare, ...(r.dev !== undefined ? { dev: r.dev } : {}), table: String(r.table ?? 254), protocol: String(r.proto ?? 3), scope: v6 ? "0" : "253", flags: [] };
    });
  return JSON.stringify([...out, local]);
}

export const ipReadCmd = ["ip", "-N", "-d", "-j", "-force", "-batch", "-"] as const;
export const ipReadInput = (name: string) => `route show table all root 0.0.0.0/0\nroute show table all root ::/0\naddr show dev ${name}\n`;

/** ipTool.read(name): every main-table route, and the link (absent: `ip` fails the third line). */
export function ipRead(name: string, link: LinkState | undefined, routes: readonly RouteRow[] = [], extra: Partial<TranscriptEntry> = {}): TranscriptEntry {
  const head = `${routesJson(routes, false)}\n${routesJson(routes, true)}\n`;
  const result: RunResult = link ? ok(`${head}${linkJson(name, link)}\n`) : { stdout: head, stderr: `Device "${name}" does not exist.\nCommand failed -:3\n`, exitCode: 1 };
  return { cmd: ipReadCmd, input: ipReadInput(name), result, ...extra };
}

/** ipTool.routesTo(dsts): the main-table routes to exactly these destinations, one answer per line. */
export function ipExact(dsts: readonly string[], routes: readonly RouteRow[] = []): TranscriptEntry {
  const answer = dsts.map((d) => routesJson(routes.filter((r) => r.dst === d), d.includes(":"))).join("\n");
  return { cmd: ipReadCmd, input: dsts.map((d) => `route show table all exact ${d}\n`).join(""), result: ok(`${answer}\n`) };
}

/** One `ip -batch -` of rendered lines. */
export const ipBatch = (lines: readonly string[], result = ok(), extra: Partial<TranscriptEntry> = {}): TranscriptEntry => ({ cmd: ["ip", "-batch", "-"], input: lines.join("\n") + "\n", result, ...extra });

// ---- wg ------------------------------------------------------------------------------------

export interface DumpPeer {
  publicKey: string;
  psk?: string;
  endpoint?: string;
  allowedIps?: string[];
  handshake?: number;
  rx?: number;
  tx?: number;
  keepalive?: number;
}

/** `wg show NAME dump` of a kernel device. */
export function dump(d: { privateKey: string; publicKey: string; listenPort: number; peers: readonly DumpPeer[] }): string {
  const peer = (p: DumpPeer) =>
    [p.publicKey, p.psk || "(none)", p.endpoint || "(none)", (p.allowedIps ?? []).join(",") || "(none)", p.handshake ?? 0, p.rx ?? 0, p.tx ?? 0, p.keepalive ? p.keepalive : "off"].join("\t");
  return [[d.privateKey, d.publicKey, d.listenPort, "off"].join("\t"), ...d.peers.map(peer)].join("\n") + "\n";
}

export const wgShow = (name: string, text: string | undefined, extra: Partial<TranscriptEntry> = {}): TranscriptEntry => ({
  cmd: ["wg", "show", name, "dump"],
  result: text === undefined ? fail("Unable to access interface: No such device\n", 1) : ok(text),
  ...extra,
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * wgTool.apply: `mkfifo` in `dir` (made for real here, as the tool would), then `wg MODE IFACE
 * /dev/stdin` reading the config from that FIFO.
 */
export function wgConf(dir: string, mode: "addconf" | "syncconf", iface: string, config: string | undefined, result = ok(), extra: Partial<TranscriptEntry> = {}): TranscriptEntry[] {
  return [
    {
      cmd: ["mkfifo", "-m", "600", new RegExp(`^${escape(dir)}/wg-[0-9a-f]{12}\\.fifo$`)],
      result: ok(),
      effect: (cmd) => void execFileSync("mkfifo", ["-m", "600", cmd[3] ?? ""]),
    },
    { cmd: ["wg", mode, iface, "/dev/stdin"], ...(config !== undefined ? { input: config } : {}), result, ...extra },
  ];
}

/** The all-zero key: how the wg config format clears a PSK. */
export const zeroKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/** Waits until `cond` holds (polling), so a test under load waits for a state instead of guessing a delay. */
export async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}
