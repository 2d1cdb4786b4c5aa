// iproute2 through `ip -json`. privhelper's routes carry their own protocol number: told apart from every route it did not make, removed
// all at once, never written over another. Full tunnel is wg-quick's: 0.0.0.0/0 and ::/0 go to a table of their own, which two rules (also
// protocol 80) send every packet to but the device's own (its fwmark); main is never touched.
import { parseCidr } from "../../proto/lib/net.js";
import type { Runner } from "./run.js";

/** `proto 80` on every route privhelper adds. */
export const routeProtocol = 80;

/** kind "wireguard" (kernel), "tun" (wireguard-go) or another; addresses canonical, sorted. */
export interface LiveLink { name: string; kind: string; up: boolean; mtu: number; addresses: string[] }

/** A canonical destination; `plexd`: made by privhelper (its protocol number). */
export interface LiveRoute { dst: string; dev: string; plexd: boolean }

/** A policy rule with privhelper's protocol number, `rule` in tunnelRules' words. */
export interface LiveRule { family: 4 | 6; priority: number; rule: string }
export const tunnelRules = (table: number): string[] => [`not fwmark ${table} table ${table}`, "table 254 suppress_prefixlength 0"];
type RuleJson = { priority: number; not?: null; fwmark?: string; table?: string; suppress_prefixlen?: number; protocol?: string };
const isDefault = (dst: string): boolean => dst.endsWith("/0");

type AddrInfo = { local?: string; prefixlen?: number; scope?: string };
type AddrJson = { ifname?: string; flags?: string[]; mtu?: number; linkinfo?: { info_kind?: string }; addr_info?: AddrInfo[] };

export function parseLink(json: string): LiveLink | undefined {
  const l = (JSON.parse(json || "[]") as AddrJson[])[0];
  if (!l?.ifname) return undefined;
  // Link-local (253) and host (254) addresses belong to the kernel, not to the spec.
  const global = (l.addr_info ?? []).filter((a) => a.scope !== "253" && a.scope !== "254" && a.local !== undefined);
  const addresses = global.map((a) => parseCidr(`${a.local}/${a.prefixlen}`, false)?.cidr ?? "").sort();
  return { name: l.ifname, kind: l.linkinfo?.info_kind ?? "", up: (l.flags ?? []).includes("UP"), mtu: l.mtu ?? 0, addresses };
}

/** Unicast (1) routes of one `ip -N -d -j route show` answer: default routes of `tunnelTable`, all others of main (254). */
export function parseRoutes(json: string, v6: boolean, tunnelTable: number): LiveRoute[] {
  const rows = JSON.parse(json || "[]") as { dst?: string; dev?: string; table?: string; type?: string; protocol?: string }[];
  const out: LiveRoute[] = [];
  for (const r of rows) {
    const dst = r.dst === "default" ? (v6 ? "::/0" : "0.0.0.0/0") : r.dst?.includes("/") ? r.dst : `${r.dst}/${v6 ? 128 : 32}`;
    const c = r.type === "1" && r.dst && r.table === String(isDefault(dst) ? tunnelTable : 254) ? parseCidr(dst, true) : undefined;
    if (c) out.push({ dst: c.cidr, dev: r.dev ?? "", plexd: r.protocol === String(routeProtocol) });
  }
  return out;
}

export interface IpTool {
  /** The link (undefined when absent) and every route parseRoutes keeps, in one `ip -batch`. */
  read(name: string, signal?: AbortSignal): Promise<{ link: LiveLink | undefined; routes: LiveRoute[] }>;
  /** The routes parseRoutes keeps to exactly these destinations (none asked, no process). */
  routesTo(dsts: readonly string[], signal?: AbortSignal): Promise<LiveRoute[]>;
  links(signal?: AbortSignal): Promise<string[]>;
  rules(signal?: AbortSignal): Promise<LiveRule[]>;
  /** False when the kernel has no WireGuard. */
  addWireGuard(name: string): Promise<boolean>;
  del(name: string): Promise<void>;
  /** Lines privhelper rendered, in one `ip -batch` (of one family: `ip rule` needs it); it stops at the first failure. */
  batch(lines: readonly string[], family?: 4 | 6): Promise<void>;
}

export function ipTool(runner: Runner, tunnelTable: number): IpTool {
  return {
    async read(name, signal) {
      // `-force` goes on past a missing link, so the routes are always the first two answers;
      // `root` selects a family (a batch line cannot take -4/-6); -N prints numbers, not names.
      const input = `route show table all root 0.0.0.0/0\nroute show table all root ::/0\naddr show dev ${name}\n`;
      const r = await runner.run("ip", ["-N", "-d", "-j", "-force", "-batch", "-"], { input, allowFailure: true, signal });
      const [v4 = "", v6 = "", link = ""] = r.stdout.split("\n");
      return { link: parseLink(link), routes: [...parseRoutes(v4, false, tunnelTable), ...parseRoutes(v6, true, tunnelTable)] };
    },
    async routesTo(dsts, signal) {
      if (dsts.length === 0) return [];
      const r = await runner.run("ip", ["-N", "-d", "-j", "-force", "-batch", "-"], { input: dsts.map((d) => `route show table all exact ${d}\n`).join(""), signal });
      return r.stdout.split("\n").flatMap((json, i) => (i < dsts.length ? parseRoutes(json, dsts[i]!.includes(":"), tunnelTable) : []));
    },
    async links(signal) {
      const r = await runner.run("ip", ["-j", "link", "show"], { signal });
      return (JSON.parse(r.stdout) as { ifname?: string }[]).flatMap((l) => (l.ifname ? [l.ifname] : []));
    },
    addWireGuard: async (name) => (await runner.run("ip", ["link", "add", name, "type", "wireguard"], { allowFailure: true })).exitCode === 0,
    del: (name) => runner.run("ip", ["link", "del", name]).then(() => undefined),
    async rules(signal) {
      // privhelper's, in tunnelRules' words (another shape reads differently and is replaced); none where a family is off.
      const text = (r: RuleJson) => (r.suppress_prefixlen !== undefined ? `table ${r.table} suppress_prefixlength ${r.suppress_prefixlen}` : `${r.not === undefined ? "" : "not "}fwmark ${Number(r.fwmark)} table ${r.table}`);
      const show = async (f: 4 | 6) => (JSON.parse((await runner.run("ip", ["-N", "-j", `-${f}`, "rule", "show"], { allowFailure: true, signal })).stdout || "[]") as RuleJson[]).filter((r) => r.protocol === String(routeProtocol)).map((r) => ({ family: f, priority: r.priority, rule: text(r) }));
      return (await Promise.all([show(4), show(6)])).flat();
    },
    async batch(lines, family) {
      if (lines.length > 0) await runner.run("ip", [...(family ? [`-${family}`] : []), "-batch", "-"], { input: lines.join("\n") + "\n", timeoutMs: 60_000 });
    },
  };
}

/** The `ip` lines that add and remove privhelper's routes via `dev`; a default route goes to `tunnelTable`. */
export const routeLine = (verb: "add" | "del", dst: string, dev: string, tunnelTable: number): string =>
  `route ${verb} ${dst} dev ${dev}${isDefault(dst) ? ` table ${tunnelTable}` : ""} proto ${routeProtocol}`;
