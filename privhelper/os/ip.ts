// iproute2: links and addresses of plexd's interfaces, read through `ip -json` so nothing
// depends on the human-readable format.
import { endianness } from "node:os";
import { parseCidr } from "../validate.js";
import type { RunOptions, Runner } from "./runner.js";

export interface LiveLink {
  name: string;
  /** linkinfo kind: "wireguard" (kernel), "tun" (wireguard-go), or another kind. */
  kind: string;
  up: boolean;
  mtu: number;
  /** Global-scope addresses as canonical CIDRs (host bits kept), sorted. */
  addresses: string[];
}

interface IpAddrJson {
  ifname?: string;
  flags?: string[];
  mtu?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: { local?: string; prefixlen?: number; scope?: string }[];
}

export function parseAddrShow(json: string): LiveLink | undefined {
  const list = JSON.parse(json) as IpAddrJson[];
  const l = list[0];
  if (!l?.ifname) return undefined;
  return {
    name: l.ifname,
    kind: l.linkinfo?.info_kind ?? "",
    up: (l.flags ?? []).includes("UP"),
    mtu: l.mtu ?? 0,
    // Link-local addresses belong to the kernel, not to the spec.
    addresses: (l.addr_info ?? [])
      .filter((a) => a.scope !== "link" && a.scope !== "host" && a.local !== undefined)
      .map((a) => `${a.local}/${a.prefixlen}`)
      .sort(),
  };
}

export interface IpTool {
  show(name: string, signal?: AbortSignal): Promise<LiveLink | undefined>;
  /** The link alone through the long-lived `ip -batch` (reads that need no routes). */
  showLink(name: string, signal?: AbortSignal): Promise<LiveLink | undefined>;
  /** The link (`ip -batch`) and its IPv4 routes (/proc/net/route): the hot path of every apply. */
  showWithRoutes(name: string, signal?: AbortSignal): Promise<{ link: LiveLink; routes: string[] } | undefined>;
  /** Names of every link in this network namespace. */
  links(signal?: AbortSignal): Promise<string[]>;
  /** Creates a kernel WireGuard link; resolves false when the kernel has no WireGuard. */
  addWireGuard(name: string, signal?: AbortSignal): Promise<boolean>;
  del(name: string, signal?: AbortSignal): Promise<void>;
  setMtu(name: string, mtu: number, signal?: AbortSignal): Promise<void>;
  setUp(name: string, up: boolean, signal?: AbortSignal): Promise<void>;
  addrReplace(name: string, cidr: string, signal?: AbortSignal): Promise<void>;
  addrDel(name: string, cidr: string, signal?: AbortSignal): Promise<void>;
  /** Destinations routed via this link that plexd added (kernel-made routes left out), as CIDRs. */
  routes(name: string, withV6: boolean, signal?: AbortSignal): Promise<string[]>;
  /** Called after plexd made or removed a link: the next batch starts a new `ip` (name cache). */
  forget(): void;
  /** Removes, then adds, routes via this link in one `ip -batch` exchange, whatever the count. */
  routeSync(name: string, remove: readonly string[], add: readonly string[], signal?: AbortSignal): Promise<void>;
}

/** `ip -j route` output to CIDRs, in ip's order; a host route is printed without its prefix length. */
export function parseRoutes(json: string, v6: boolean): string[] {
  const rows = JSON.parse(json || "[]") as { dst?: string; protocol?: string }[];
  const out: string[] = [];
  for (const r of rows) {
    const dst = r.dst;
    if (dst === undefined || dst === "default" || r.protocol === "kernel" || (v6 && /^(fe80|ff00)/.test(dst))) continue;
    out.push(dst.includes("/") ? dst : `${dst}/${v6 ? 128 : 32}`);
  }
  return out;
}

/**
 * Routes via `name` in a /proc/net/route table, as CIDRs, leaving out `kernelMade` (the
 * prefix routes the kernel adds with each address; the table has no protocol column). The
 * kernel prints each destination and mask as the hex of their network-order bytes read as
 * one host-order integer.
 */
export function parseProcRoutes(text: string, name: string, kernelMade: ReadonlySet<string>, littleEndian = endianness() === "LE"): string[] {
  const out: string[] = [];
  const prefix = `${name}\t`;
  // Line 0 is the header. Fields are found by their tabs, not split: 1,000 routes are 1,000 lines.
  for (let at = text.indexOf("\n") + 1; at > 0 && at < text.length; ) {
    const end = text.indexOf("\n", at);
    const line = at;
    at = end === -1 ? text.length : end + 1;
    if (!text.startsWith(prefix, line)) continue;
    const dstAt = line + prefix.length;
    let maskAt = dstAt;
    for (let f = 1; f < 7 && maskAt !== 0; f++) maskAt = text.indexOf("\t", maskAt) + 1;
    if (maskAt === 0 || (end !== -1 && maskAt > end)) continue;
    const dst = hex32(text, dstAt);
    const mask = hex32(text, maskAt);
    if (dst < 0 || mask < 0) continue;
    let bits = 0;
    for (let m = mask; m !== 0; m &= m - 1) bits++;
    if (bits === 0) continue; // a default route is not a peer's
    const cidr = cidrOf(dst, bits, littleEndian);
    if (!kernelMade.has(cidr)) out.push(cidr);
  }
  return out;
}

/**
 * CIDR text per destination and prefix length seen in recent tables: 1,000 routes are
 * mostly the same ones at every apply, and building each text anew was a quarter of a
 * megabyte of garbage per read. Bounded; dropped whole when full.
 */
let cidrMemo = new Map<number, string>();

function cidrOf(dst: number, bits: number, littleEndian: boolean): string {
  const key = (dst * 33 + bits) * 2 + (littleEndian ? 1 : 0);
  let cidr = cidrMemo.get(key);
  if (cidr === undefined) {
    cidr = littleEndian ? `${dst & 255}.${(dst >>> 8) & 255}.${(dst >>> 16) & 255}.${dst >>> 24}/${bits}` : `${dst >>> 24}.${(dst >>> 16) & 255}.${(dst >>> 8) & 255}.${dst & 255}/${bits}`;
    if (cidrMemo.size >= 65_536) cidrMemo = new Map();
    cidrMemo.set(key, cidr);
  }
  return cidr;
}

/** Eight hex digits at `at` as an unsigned integer, read in place; -1 if they are not. */
function hex32(text: string, at: number): number {
  let v = 0;
  for (let i = at; i < at + 8; i++) {
    const c = text.charCodeAt(i);
    const d = c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** The prefix routes the kernel makes for these addresses (IPv4; a /32 makes none). */
export function kernelPrefixRoutes(addresses: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const a of addresses) {
    if (a.includes(":") || a.endsWith("/32")) continue;
    const net = parseCidr(a, true);
    if (net !== undefined) out.add(net);
  }
  return out;
}

const procRoutes = "/proc/net/route";
const batchArgs = ["-d", "-j", "-batch", "-"];

export function ipTool(runner: Runner): IpTool {
  const opts = (signal?: AbortSignal, allowFailure = false): RunOptions => ({ timeoutMs: 15_000, allowFailure, ...(signal ? { signal } : {}) });
  const run = async (args: string[], signal?: AbortSignal) => {
    await runner.run("ip", args, opts(signal));
  };
  // The hot path of every apply and read goes through one long-lived `ip -batch` (os/runner.ts).
  let stale = false;
  const batch = (lines: string[], answers: number, signal?: AbortSignal, readOnly = false) => {
    const fresh = stale;
    stale = false;
    return runner.batch("ip", batchArgs, lines, { ...opts(signal, readOnly), answers, fresh, retryFresh: readOnly });
  };
  return {
    async show(name, signal) {
      const r = await runner.run("ip", ["-d", "-j", "addr", "show", "dev", name], opts(signal, true));
      if (r.exitCode !== 0) return undefined;
      return parseAddrShow(r.stdout);
    },
    async showLink(name, signal) {
      const r = await batch([`addr show dev ${name}`], 1, signal, true);
      return r.exitCode === 0 ? parseAddrShow(r.stdout.trim() || "[]") : undefined;
    },
    async showWithRoutes(name, signal) {
      const r = await batch([`addr show dev ${name}`], 1, signal, true);
      const link = r.exitCode === 0 ? parseAddrShow(r.stdout.trim() || "[]") : undefined;
      if (link === undefined) return undefined;
      // `ip route show` prints and flushes route by route (1,000 pipe writes for 1,000 peers);
      // the kernel's own table is one read. It holds the main table, which is where plexd's are.
      const routes = parseProcRoutes(runner.readKernelTable(procRoutes), name, kernelPrefixRoutes(link.addresses));
      return { link, routes };
    },
    forget() {
      stale = true;
    },
    async links(signal) {
      const r = await runner.run("ip", ["-j", "link", "show"], opts(signal));
      return (JSON.parse(r.stdout) as { ifname?: string }[]).flatMap((l) => (l.ifname ? [l.ifname] : []));
    },
    async addWireGuard(name, signal) {
      const r = await runner.run("ip", ["link", "add", name, "type", "wireguard"], opts(signal, true));
      return r.exitCode === 0;
    },
    del: (name, signal) => run(["link", "del", name], signal),
    setMtu: (name, mtu, signal) => run(["link", "set", name, "mtu", String(mtu)], signal),
    setUp: (name, up, signal) => run(["link", "set", name, up ? "up" : "down"], signal),
    addrReplace: (name, cidr, signal) => run(["addr", "replace", cidr, "dev", name], signal),
    addrDel: (name, cidr, signal) => run(["addr", "del", cidr, "dev", name], signal),
    async routes(name, withV6, signal) {
      const v4 = await runner.run("ip", ["-j", "-4", "route", "show", "dev", name], opts(signal, true));
      const v6 = withV6 ? await runner.run("ip", ["-j", "-6", "route", "show", "dev", name], opts(signal, true)) : undefined;
      return [...(v4.exitCode === 0 ? parseRoutes(v4.stdout, false) : []), ...(v6?.exitCode === 0 ? parseRoutes(v6.stdout, true) : [])];
    },
    async routeSync(name, remove, add, signal) {
      if (remove.length + add.length === 0) return;
      // ip infers each line's family from its prefix; names and CIDRs were re-serialised by
      // validation, so nothing here can inject a command.
      const lines = [...remove.map((r) => `route del ${r} dev ${name}`), ...add.map((r) => `route replace ${r} dev ${name}`)];
      await batch(lines, 0, signal);
    },
  };
}
