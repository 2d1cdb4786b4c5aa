// The `wg` tool: reading a device (`wg show NAME dump`) and writing one in a single step
// through a config on stdin (`wg addconf|syncconf|setconf NAME /dev/stdin`), so private
// keys and PSKs never appear in argv (design.md 2, 4.9).
import type { Runner } from "./runner.js";

export interface WgPeer {
  publicKey: string;
  /** "" when none. */
  presharedKey: string;
  /** "" when none. */
  endpoint: string;
  /** Canonical CIDRs, sorted. */
  allowedIps: string[];
  /** Seconds, 0 = off. */
  keepalive: number;
}

export interface WgLivePeer extends WgPeer {
  /** Unix seconds, 0 = never. */
  latestHandshake: number;
  rxBytes: bigint;
  txBytes: bigint;
}

export interface WgDevice<P extends WgPeer = WgPeer> {
  privateKey: string;
  listenPort: number;
  peers: P[];
}

export interface WgLiveDevice extends WgDevice<WgLivePeer> {
  publicKey: string;
}

const none = (v: string | undefined): string => (v === undefined || v === "(none)" ? "" : v);

/** Parses `wg show NAME dump` (tab-separated; first line is the interface). */
export function parseDump(text: string): WgLiveDevice {
  const lines = text.split("\n").filter((l) => l !== "");
  const head = (lines[0] ?? "").split("\t");
  if (head.length < 4) throw new Error(`unexpected wg dump header: ${head.length} fields`);
  const peers = lines.slice(1).map((line): WgLivePeer => {
    const f = line.split("\t");
    if (f.length < 8) throw new Error(`unexpected wg dump peer line: ${f.length} fields`);
    const ips = none(f[3]);
    return {
      publicKey: f[0] ?? "",
      presharedKey: none(f[1]),
      endpoint: none(f[2]),
      allowedIps: ips === "" ? [] : ips.split(",").sort(),
      latestHandshake: Number(f[4]),
      rxBytes: BigInt(f[5] ?? "0"),
      txBytes: BigInt(f[6] ?? "0"),
      keepalive: f[7] === "off" ? 0 : Number(f[7]),
    };
  });
  return { privateKey: none(head[0]), publicKey: none(head[1]), listenPort: Number(head[2]), peers };
}

// An all-zero key is how the wg config format clears a PSK on an existing peer.
const zeroKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

function renderPeer(p: WgPeer, clearPsk: boolean): string {
  const lines = ["[Peer]", `PublicKey = ${p.publicKey}`];
  if (p.presharedKey !== "") lines.push(`PresharedKey = ${p.presharedKey}`);
  else if (clearPsk) lines.push(`PresharedKey = ${zeroKey}`);
  if (p.endpoint !== "") lines.push(`Endpoint = ${p.endpoint}`);
  // Every [Peer] in a config file replaces that peer's allowed IPs (wg sets
  // REPLACE_ALLOWEDIPS per peer), so an empty list must still be stated to clear it.
  lines.push(`AllowedIPs = ${p.allowedIps.join(", ")}`);
  lines.push(`PersistentKeepalive = ${p.keepalive === 0 ? "off" : String(p.keepalive)}`);
  return lines.join("\n");
}

/**
 * Renders a wg config. `device` fields that are undefined are left out (addconf keeps the
 * live value); `peers` are written in full. `clearPsk` writes the zero key for peers
 * without a PSK so that an update removes one that is live.
 */
export function renderConfig(device: { privateKey?: string; listenPort?: number }, peers: readonly WgPeer[], clearPsk = false): string {
  const out = ["[Interface]"];
  if (device.privateKey !== undefined) out.push(`PrivateKey = ${device.privateKey}`);
  if (device.listenPort !== undefined) out.push(`ListenPort = ${device.listenPort}`);
  for (const p of peers) out.push(renderPeer(p, clearPsk));
  return out.join("\n") + "\n";
}

/** One WireGuard change, applied by a backend in a single step. */
export interface WgChange {
  privateKey?: string;
  listenPort?: number;
  /** Peers to add or update, stated in full. */
  upsert: WgPeer[];
  /** Public keys of peers to remove. */
  remove: string[];
}

export interface WgBackend {
  /** The live device, or undefined when it is not a WireGuard device. */
  show(iface: string, signal?: AbortSignal, opts?: { stats?: boolean }): Promise<WgLiveDevice | undefined>;
  /** Applies `change`; `want` is the whole desired device, for backends that must restate it. */
  apply(iface: string, change: WgChange, want: WgDevice, signal?: AbortSignal): Promise<void>;
}

/**
 * The wg config format cannot remove a peer, so removals go through `syncconf` with the
 * whole desired device (the interface fields must be given or they reset); everything
 * else through `addconf` with only what changed.
 */
export function renderChange(change: WgChange, want: WgDevice): { mode: "addconf" | "syncconf"; config: string } {
  if (change.remove.length > 0) return { mode: "syncconf", config: renderConfig({ privateKey: want.privateKey, listenPort: want.listenPort }, want.peers, true) };
  const device: { privateKey?: string; listenPort?: number } = {};
  if (change.privateKey !== undefined) device.privateKey = change.privateKey;
  if (change.listenPort !== undefined) device.listenPort = change.listenPort;
  return { mode: "addconf", config: renderConfig(device, change.upsert, true) };
}

/** The `wg` tool: kernel WireGuard (netlink), or any device `wg` can reach. */
export function wgTool(runner: Runner): WgBackend {
  return {
    async show(iface, signal) {
      const r = await runner.run("wg", ["show", iface, "dump"], { allowFailure: true, timeoutMs: 30_000, ...(signal ? { signal } : {}) });
      if (r.exitCode !== 0) return undefined;
      return parseDump(r.stdout);
    },
    async apply(iface, change, want, signal) {
      const { mode, config } = renderChange(change, want);
      await runner.run("wg", [mode, iface, "/dev/stdin"], { input: config, timeoutMs: 60_000, ...(signal ? { signal } : {}) });
    },
  };
}
