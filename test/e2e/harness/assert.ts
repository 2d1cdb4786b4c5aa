import { nsExec } from "./exec.js";
import { spawnInNamespace, type ProcessHandle } from "./process.js";

// What a user would look at: ping, `wg show`, `nft list ruleset`, a TCP connect, `ip link`.

export interface PingOptions {
  /** Echo requests to send (default 3). */
  count?: number;
  /** Overall deadline (default 5000 ms). */
  timeoutMs?: number;
  /** Seconds between requests (default 0.2, the smallest iputils allows without root). */
  interval?: number;
}

export interface PingResult {
  /** At least one reply arrived (check `lossPercent` for stricter assertions). */
  ok: boolean;
  transmitted: number;
  received: number;
  lossPercent: number;
  output: string;
}

export async function ping(ns: string, ip: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const deadline = Math.max(1, Math.ceil(timeoutMs / 1000));
  const r = await nsExec(
    ns,
    ["ping", "-n", "-c", String(count), "-i", String(opts.interval ?? 0.2), "-W", "1", "-w", String(deadline), ip],
    { reject: false, timeoutMs: timeoutMs + 2_000 },
  );
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout);
  const transmitted = m ? Number(m[1]) : 0;
  const received = m ? Number(m[2]) : 0;
  const loss = /([\d.]+)% packet loss/.exec(r.stdout);
  return {
    ok: received > 0,
    transmitted,
    received,
    lossPercent: loss ? Number(loss[1]) : 100,
    output: `${r.stdout}${r.stderr}`,
  };
}

export interface WgPeer {
  publicKey: string;
  hasPresharedKey: boolean;
  endpoint: string | null;
  allowedIps: string[];
  /** Unix seconds; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  /** Seconds; 0 = off. */
  persistentKeepalive: number;
}

export interface WgInterface {
  /** The private key is deliberately not returned: assertions print their operands. */
  hasPrivateKey: boolean;
  publicKey: string | null;
  listenPort: number;
  fwmark: string | null;
  peers: WgPeer[];
}

const none = (s: string | undefined): string | null => (s === undefined || s === "(none)" || s === "off" ? null : s);

/** Parses `wg show IFACE dump`. */
export function parseWgDump(text: string): WgInterface {
  const [head, ...rest] = text.trim().split("\n");
  const h = (head ?? "").split("\t");
  if (h.length < 4) throw new Error(`unexpected wg dump header: ${JSON.stringify(head)}`);
  return {
    hasPrivateKey: none(h[0]) !== null,
    publicKey: none(h[1]),
    listenPort: Number(h[2]),
    fwmark: none(h[3]),
    peers: rest
      .filter((l) => l.trim().length > 0)
      .map((l) => {
        const f = l.split("\t");
        return {
          publicKey: f[0] ?? "",
          hasPresharedKey: none(f[1]) !== null,
          endpoint: none(f[2]),
          allowedIps: none(f[3])?.split(",") ?? [],
          latestHandshake: Number(f[4] ?? 0),
          rxBytes: Number(f[5] ?? 0),
          txBytes: Number(f[6] ?? 0),
          persistentKeepalive: Number(none(f[7]) ?? 0),
        };
      }),
  };
}

export async function wgShow(ns: string, iface: string): Promise<WgInterface> {
  const r = await nsExec(ns, ["wg", "show", iface, "dump"]);
  return parseWgDump(r.stdout);
}

/** `nft -j list ruleset`: the `nftables` array of the JSON output. */
export type NftObject = Record<string, Record<string, unknown>>;

export interface NftRuleset {
  objects: NftObject[];
  tables: Record<string, unknown>[];
  chains: Record<string, unknown>[];
  rules: Record<string, unknown>[];
}

export async function nftList(ns: string): Promise<NftRuleset> {
  const r = await nsExec(ns, ["nft", "-j", "list", "ruleset"]);
  const parsed = JSON.parse(r.stdout || '{"nftables":[]}') as { nftables?: NftObject[] };
  const objects = parsed.nftables ?? [];
  const pick = (kind: string): Record<string, unknown>[] =>
    objects.flatMap((o) => (o[kind] !== undefined ? [o[kind]] : []));
  return { objects, tables: pick("table"), chains: pick("chain"), rules: pick("rule") };
}

export interface TcpConnectResult {
  ok: boolean;
  /** e.g. "ECONNREFUSED", "ETIMEDOUT" (no answer: dropped), "EHOSTUNREACH". */
  error: string | null;
  ms: number;
}

// A connect attempt from inside the namespace, run by node itself (no shell, no nc needed).
const CONNECT_SCRIPT = `
const net = require("node:net");
const [host, port, timeout] = process.argv.slice(1);
const t0 = Date.now();
const done = (ok, error) => { process.stdout.write(JSON.stringify({ ok, error, ms: Date.now() - t0 }) + "\\n"); process.exit(0); };
const s = net.connect({ host, port: Number(port) });
s.setTimeout(Number(timeout), () => { s.destroy(); done(false, "ETIMEDOUT"); });
s.on("connect", () => { s.destroy(); done(true, null); });
s.on("error", (e) => done(false, e.code || e.message));
`;

export async function tcpConnect(ns: string, ip: string, port: number, timeoutMs = 3_000): Promise<TcpConnectResult> {
  const r = await nsExec(ns, [process.execPath, "-e", CONNECT_SCRIPT, ip, String(port), String(timeoutMs)], {
    timeoutMs: timeoutMs + 10_000,
  });
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as TcpConnectResult;
}

// Accepts connections, writes "hello\n" and closes; prints one "listening" line when ready.
const LISTEN_SCRIPT = `
const net = require("node:net");
const [host, port] = process.argv.slice(1);
const srv = net.createServer((c) => { c.on("error", () => {}); c.end("hello\\n"); });
srv.listen({ host, port: Number(port) }, () => console.log("listening " + JSON.stringify(srv.address())));
process.on("SIGTERM", () => srv.close(() => process.exit(0)));
`;

/** A TCP listener in `ns` on ip:port (port 0 = any; read the port from the returned handle's line). */
export async function tcpListen(
  ns: string,
  ip: string,
  port: number,
  opts: { logDir?: string; name?: string } = {},
): Promise<{ proc: ProcessHandle; port: number }> {
  const proc = spawnInNamespace({
    ns,
    argv: [process.execPath, "-e", LISTEN_SCRIPT, ip, String(port)],
    name: opts.name ?? `tcp-listen-${port}`,
    ...(opts.logDir ? { logDir: opts.logDir } : {}),
  });
  const line = await proc.waitForLine(/^listening (.*)$/, 10_000);
  const addr = JSON.parse(line.match?.[1] ?? "{}") as { port?: number };
  return { proc, port: addr.port ?? port };
}

export interface LinkInfo {
  ifname: string;
  ifindex: number;
  mtu: number;
  operstate: string;
  flags: string[];
  link_type: string;
  address?: string;
  master?: string;
  /** For veth peers/bridges, from `ip -d`: kind "veth", "bridge", "tun", "wireguard". */
  kind?: string;
}

export async function listLinks(ns: string): Promise<LinkInfo[]> {
  const r = await nsExec(ns, ["ip", "-d", "-j", "link", "show"]);
  const raw = JSON.parse(r.stdout || "[]") as (LinkInfo & { linkinfo?: { info_kind?: string } })[];
  return raw.map((l) => ({ ...l, ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}) }));
}

export interface AddrInfo {
  ifname: string;
  addrs: { family: "inet" | "inet6"; local: string; prefixlen: number }[];
}

export async function listAddresses(ns: string): Promise<AddrInfo[]> {
  const r = await nsExec(ns, ["ip", "-j", "addr", "show"]);
  const raw = JSON.parse(r.stdout || "[]") as { ifname: string; addr_info?: { family: "inet" | "inet6"; local: string; prefixlen: number }[] }[];
  return raw.map((l) => ({
    ifname: l.ifname,
    addrs: (l.addr_info ?? []).map((a) => ({ family: a.family, local: a.local, prefixlen: a.prefixlen })),
  }));
}

/** expect.poll for hooks (vitest allows it only inside tests): polls `fn` once a second until it holds. */
export async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
