// WireGuard devices as privhelper sees them, and the `wg` tool for kernel devices. Configs go through a FIFO: keys never in argv nor on
// disk, and `wg` opens its config by path, which Node's stdin (a socket) cannot serve.
import { randomBytes } from "node:crypto";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Runner } from "./run.js";

/** Keys base64, "" for no PSK or endpoint; allowed IPs canonical and sorted; keepalive in s, 0 = off. */
export interface WgPeer { publicKey: string; presharedKey: string; endpoint: string; allowedIps: string[]; keepalive: number }

/** Handshake in unix seconds, 0 = never. */
export interface WgLivePeer extends WgPeer { latestHandshake: number; rxBytes: bigint; txBytes: bigint }

/** `fwmark`: on the device's own packets, 0 or absent = none. */
export interface WgDevice<P extends WgPeer = WgPeer> { privateKey: string; listenPort: number; fwmark?: number; peers: P[] }

export interface WgLiveDevice extends WgDevice<WgLivePeer> { publicKey: string }

/** One WireGuard change: device fields, peers stated in full, public keys to remove. */
export interface WgChange { privateKey?: string; listenPort?: number; fwmark?: number; upsert: WgPeer[]; remove: string[] }

export interface WgBackend {
  /** The live device, or undefined when there is no WireGuard device of that name. */
  show(iface: string, signal?: AbortSignal): Promise<WgLiveDevice | undefined>;
  /** Applies `change`; `want` is the whole desired device, for backends that must restate it. */
  apply(iface: string, change: WgChange, want: WgDevice): Promise<void>;
}

/** `wg show NAME dump`: tab-separated, the interface first. */
export function parseDump(text: string): WgLiveDevice {
  const none = (v: string | undefined): string => (v === undefined || v === "(none)" ? "" : v);
  const [head = "", ...lines] = text.split("\n").filter((l) => l !== "");
  const h = head.split("\t");
  const peers = lines.map((line): WgLivePeer => {
    const [key = "", psk, endpoint, ips, handshake, rx, tx, keepalive] = line.split("\t");
    const allowedIps = none(ips) === "" ? [] : none(ips).split(",").sort();
    return { publicKey: key, presharedKey: none(psk), endpoint: none(endpoint), allowedIps, latestHandshake: Number(handshake ?? 0), rxBytes: BigInt(rx ?? "0"), txBytes: BigInt(tx ?? "0"), keepalive: keepalive === "off" ? 0 : Number(keepalive ?? 0) };
  });
  return { privateKey: none(h[0]), publicKey: none(h[1]), listenPort: Number(h[2] ?? 0), fwmark: h[3] === undefined || h[3] === "off" ? 0 : Number(h[3]), peers };
}

// The all-zero key clears a PSK on an existing peer.
const zeroKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/** `device`'s given fields and `peers` in full (each [Peer] replaces that peer's allowed IPs). */
export function renderConfig(device: { privateKey?: string; listenPort?: number; fwmark?: number }, peers: readonly WgPeer[]): string {
  const out = ["[Interface]"];
  if (device.privateKey !== undefined) out.push(`PrivateKey = ${device.privateKey}`);
  if (device.listenPort !== undefined) out.push(`ListenPort = ${device.listenPort}`);
  if (device.fwmark !== undefined) out.push(`FwMark = ${device.fwmark === 0 ? "off" : String(device.fwmark)}`);
  for (const p of peers) {
    out.push("[Peer]", `PublicKey = ${p.publicKey}`, `PresharedKey = ${p.presharedKey || zeroKey}`);
    if (p.endpoint !== "") out.push(`Endpoint = ${p.endpoint}`);
    // `wg` refuses an empty AllowedIPs line; without one, a [Peer] of syncconf has none.
    if (p.allowedIps.length > 0) out.push(`AllowedIPs = ${p.allowedIps.join(", ")}`);
    out.push(`PersistentKeepalive = ${p.keepalive === 0 ? "off" : String(p.keepalive)}`);
  }
  return out.join("\n") + "\n";
}

/** The config format cannot remove a peer or clear its allowed IPs: those go through `syncconf` with the whole device. */
export function renderChange(change: WgChange, want: WgDevice): { mode: "addconf" | "syncconf"; config: string } {
  if (change.remove.length > 0 || change.upsert.some((p) => p.allowedIps.length === 0)) return { mode: "syncconf", config: renderConfig({ privateKey: want.privateKey, listenPort: want.listenPort, fwmark: want.fwmark ?? 0 }, want.peers) };
  return { mode: "addconf", config: renderConfig(change, change.upsert) };
}

/** The `wg` tool; `fifoDir` is privhelper's root-only runtime directory. */
export function wgTool(runner: Runner, fifoDir: string): WgBackend {
  return {
    async show(iface, signal) {
      const r = await runner.run("wg", ["show", iface, "dump"], { allowFailure: true, signal });
      return r.exitCode === 0 ? parseDump(r.stdout) : undefined;
    },
    async apply(iface, change, want) {
      const { mode, config } = renderChange(change, want);
      const fifo = join(fifoDir, `wg-${randomBytes(6).toString("hex")}.fifo`);
      await runner.run("mkfifo", ["-m", "600", fifo]);
      try {
        // Opening either end of a FIFO blocks until the other is opened.
        const [reader, writer] = await Promise.all([open(fifo, "r"), open(fifo, "w")]);
        await rm(fifo);
        const wg = runner.run("wg", [mode, iface, "/dev/stdin"], { stdinFd: reader.fd, timeoutMs: 60_000 });
        // Our copy of the read end closes before writing, so a wg that exits early ends the write (EPIPE).
        const write = reader.close().then(() => writer.writeFile(config)).finally(() => writer.close());
        await Promise.all([wg, write]);
      } finally {
        await rm(fifo, { force: true });
      }
    },
  };
}
