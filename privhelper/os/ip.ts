// iproute2, always through `ip -json`, so nothing depends on the human-readable format.
// privhelper's routes carry their own protocol number: they can be told from every route it
// did not make, removed all at once, and are never written over a foreign one.
import { parseCidr } from "../../proto/lib/net.js";
import type { Runner } from "./run.js";

/** `proto 80` on every route privhelper adds. */
export const routeProtocol = 80;

export interface LiveLink {
  name: string;
  /** linkinfo kind: "wireguard" (kernel), "tun" (wireguard-go), or another kind. */
  kind: string;
  up: boolean;
  mtu: number;
  /** Global-scope addresses as canonical CIDRs (host bits kept), sorted. */
  addresses: string[];
}

export interface LiveRoute {
  /** Canonical destination CIDR. */
  dst: string;
  dev: string;
  /** Made by privhelper (its protocol number). */
  plexd: boolean;
}

interface AddrJson {
  ifname?: string;
  flags?: string[];
  mtu?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: { local?: string; prefixlen?: number; scope?: string }[];
}

export function parseLink(json: string): LiveLink | undefined {
  const l = (JSON.parse(json || "[]") as AddrJson[])[0];
  if (!l?.ifname) return undefined;
  // Link-local (253) and host (254) addresses belong to the kernel, not to the spec.
  const global = (l.addr_info ?? []).filter((a) => a.scope !== "253" && a.scope !== "254" && a.local !== undefined);
  return {
    name: l.ifname,
    kind: l.linkinfo?.info_kind ?? "",
    up: (l.flags ?? []).includes("UP"),
    mtu: l.mtu ?? 0,
    addresses: global.map((a) => parseCidr(`${a.local}/${a.prefixlen}`, false)?.cidr ?? "").sort(),
  };
}

/** Main-table (254) unicast (1) routes of one `ip -N -d -j route show` answer. */
export function parseRoutes(json: string, v6: boolean): LiveRoute[] {
  const rows = JSON.parse(json || "[]") as { dst?: string; dev?: string; table?: string; type?: string; protocol?: string }[];
  const out: LiveRoute[] = [];
  for (const r of rows) {
    if (r.table !== "254" || r.type !== "1" || !r.dst) continue;
    const dst = r.dst === "default" ? (v6 ? "::/0" : "0.0.0.0/0") : r.dst.includes("/") ? r.dst : `${r.dst}/${v6 ? 128 : 32}`;
    const c = parseCidr(dst, true);
    if (c) out.push({ dst: c.cidr, dev: r.dev ?? "", plexd: r.protocol === String(routeProtocol) });
  }
  return out;
}

export interface IpTool {
  /** The link and every main-table route, in one `ip -batch`; link undefined when absent. */
  read(name: string, signal?: AbortSignal): Promise<{ link: LiveLink | undefined; routes: LiveRoute[] }>;
  /** Names of every link in this network namespace. */
  links(signal?: AbortSignal): Promise<string[]>;
  /** Creates a kernel WireGuard link; false when the kernel has no WireGuard. */
  addWireGuard(name: string): Promise<boolean>;
  del(name: string): Promise<void>;
  /** Runs `ip` commands (link/addr/route lines privhelper rendered) in one batch; stops at the first failure. */
  batch(lines: readonly string[]): Promise<void>;
}

export function ipTool(runner: Runner): IpTool {
  return {
    async read(name, signal) {
      // `-force` goes on past a missing link, so the routes are always the first two answers;
      // `root` selects a family (a batch line cannot take -4/-6); -N prints numbers, not names.
      const input = `route show table all root 0.0.0.0/0\nroute show table all root ::/0\naddr show dev ${name}\n`;
      const r = await runner.run("ip", ["-N", "-d", "-j", "-force", "-batch", "-"], { input, allowFailure: true, ...(signal ? { signal } : {}) });
      const [v4 = "", v6 = "", link = ""] = r.stdout.split("\n");
      return { link: parseLink(link), routes: [...parseRoutes(v4, false), ...parseRoutes(v6, true)] };
    },
    async links(signal) {
      const r = await runner.run("ip", ["-j", "link", "show"], signal ? { signal } : {});
      return (JSON.parse(r.stdout) as { ifname?: string }[]).flatMap((l) => (l.ifname ? [l.ifname] : []));
    },
    async addWireGuard(name) {
      return (await runner.run("ip", ["link", "add", name, "type", "wireguard"], { allowFailure: true })).exitCode === 0;
    },
    async del(name) {
      await runner.run("ip", ["link", "del", name]);
    },
    async batch(lines) {
      if (lines.length > 0) await runner.run("ip", ["-batch", "-"], { input: lines.join("\n") + "\n", timeoutMs: 60_000 });
    },
  };
}

/** The `ip` lines that add and remove privhelper's routes via `dev`. */
export const routeLine = (verb: "add" | "del", dst: string, dev: string): string => `route ${verb} ${dst} dev ${dev} proto ${routeProtocol}`;
