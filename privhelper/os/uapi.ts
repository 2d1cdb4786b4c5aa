// wireguard-go's UAPI (https://www.wireguard.com/xplatform/) over its root-only socket: what `wg`
// itself speaks to userspace devices, without two processes per apply. One connection per request.
import { connect } from "node:net";
import { keyFromHex as b64, keyToHex as hex } from "../../proto/lib/keys.js";
import { parseCidr } from "../../proto/lib/net.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { WgBackend, WgChange, WgLiveDevice, WgLivePeer } from "./wg.js";

const zeroHex = "0".repeat(64);

/** A `get=1` answer (no public key: ReadMesh derives it). Allowed IPs are re-parsed: they reach `ip` as routes. */
export function parseGet(text: string): WgLiveDevice {
  const dev: WgLiveDevice = { privateKey: "", publicKey: "", listenPort: 0, fwmark: 0, peers: [] };
  let peer: WgLivePeer | undefined;
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    const [key, value] = [line.slice(0, eq), line.slice(eq + 1)];
    if (key === "errno" && value !== "0") throw new PlexdError("internal", `wireguard-go UAPI get: errno ${value}`);
    if (key === "public_key") {
      peer = { publicKey: b64(value), presharedKey: "", endpoint: "", allowedIps: [], keepalive: 0, latestHandshake: 0, rxBytes: 0n, txBytes: 0n };
      dev.peers.push(peer);
    } else if (!peer) {
      if (key === "private_key") dev.privateKey = b64(value);
      else if (key === "listen_port") dev.listenPort = Number(value);
      else if (key === "fwmark") dev.fwmark = Number(value);
    } else if (key === "preshared_key") peer.presharedKey = value === zeroHex ? "" : b64(value);
    else if (key === "endpoint") peer.endpoint = value;
    else if (key === "allowed_ip") peer.allowedIps.push(value);
    else if (key === "persistent_keepalive_interval") peer.keepalive = Number(value);
    else if (key === "last_handshake_time_sec") peer.latestHandshake = Number(value);
    else if (key === "rx_bytes") peer.rxBytes = BigInt(value);
    else if (key === "tx_bytes") peer.txBytes = BigInt(value);
  }
  for (const p of dev.peers) p.allowedIps = p.allowedIps.flatMap((a) => parseCidr(a, true)?.cidr ?? []).sort();
  return dev;
}

/** A `set=1` request: device fields, then upserts, then removals (a cut-off request leaves a superset). */
export function renderSet(change: WgChange): string {
  const out = ["set=1"];
  if (change.privateKey !== undefined) out.push(`private_key=${hex(change.privateKey)}`);
  if (change.listenPort !== undefined) out.push(`listen_port=${change.listenPort}`);
  if (change.fwmark !== undefined) out.push(`fwmark=${change.fwmark}`);
  for (const p of change.upsert) {
    out.push(`public_key=${hex(p.publicKey)}`, `preshared_key=${p.presharedKey ? hex(p.presharedKey) : zeroHex}`);
    if (p.endpoint !== "") out.push(`endpoint=${p.endpoint}`);
    out.push(`persistent_keepalive_interval=${p.keepalive}`, "replace_allowed_ips=true", ...p.allowedIps.map((a) => `allowed_ip=${a}`));
  }
  for (const k of change.remove) out.push(`public_key=${hex(k)}`, "remove=true");
  return out.join("\n") + "\n\n";
}

/** One request on a connection of its own; the answer ends with an empty line. */
export async function uapiExchange(path: string, request: string, signal?: AbortSignal, timeoutMs = 30_000): Promise<string> {
  const sock = connect(path).setEncoding("utf8");
  const timer = setTimeout(() => sock.destroy(new PlexdError("deadline_exceeded", `UAPI ${path}: no answer in ${timeoutMs} ms`)), timeoutMs);
  const onAbort = (): void => void sock.destroy(new PlexdError("cancelled", "UAPI request cancelled"));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    sock.write(request);
    let answer = "";
    for await (const d of sock) if ((answer += d as string).endsWith("\n\n")) return answer;
    throw new PlexdError("unavailable", `UAPI ${path}: closed before the answer ended`);
  } catch (err) {
    throw PlexdError.from(err);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    sock.destroy();
  }
}

export function uapiBackend(socketOf: (iface: string) => string): WgBackend {
  return {
    async show(iface, signal) {
      // No socket, or nobody behind it: no userspace device of that name.
      const gone = (err: unknown) => ["not_found", "unavailable"].includes(PlexdError.from(err).code);
      const answer = await uapiExchange(socketOf(iface), "get=1\n\n", signal).catch((err: unknown) => (gone(err) ? undefined : Promise.reject(err)));
      return answer === undefined ? undefined : parseGet(answer);
    },
    async apply(iface, change) {
      const reply = await uapiExchange(socketOf(iface), renderSet(change));
      const errno = /errno=(-?\d+)/.exec(reply)?.[1];
      if (errno !== "0") throw new PlexdError("internal", `wireguard-go UAPI set on ${iface}: errno ${errno ?? "missing"}`);
    },
  };
}
