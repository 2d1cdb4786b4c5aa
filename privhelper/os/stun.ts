// The two OS pieces of StunProbe: one UDP request/response exchange, and the short-lived SNAT that lets it leave from the WireGuard port.
// The socket is connect()ed to the server, so the kernel delivers only its datagrams, and the source address is known before anything is
// sent — which lets the caller install the SNAT for exactly this socket in between (`beforeSend`).
import { createSocket } from "node:dgram";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Runner } from "./run.js";

/** `bindPort` 0 (default) binds an ephemeral port; EADDRINUSE surfaces as `already_exists`. */
type Exchange = { ip: string; port: number; request: Uint8Array; timeoutMs: number };
export interface UdpExchangeOptions extends Exchange { bindPort?: number; signal?: AbortSignal; beforeSend?: (local: { address: string; port: number }) => Promise<void> }

export type UdpExchange = (opts: UdpExchangeOptions) => Promise<{ reply: Buffer; localPort: number }>;

export const udpExchange: UdpExchange = async (opts) => {
  const sock = createSocket({ type: "udp4" });
  let timer: NodeJS.Timeout | undefined;
  let onAbort = (): void => undefined;
  // Every way the exchange can end rejects or resolves this one promise.
  const ended = new Promise<Buffer>((resolve, reject) => {
    sock.on("error", (err) => reject((err as NodeJS.ErrnoException).code === "EADDRINUSE" ? new PlexdError("already_exists", `UDP port ${opts.bindPort ?? 0} is in use`) : PlexdError.from(err)));
    sock.on("message", resolve);
    onAbort = () => reject(new PlexdError("cancelled", "StunProbe cancelled"));
    timer = setTimeout(() => reject(new PlexdError("deadline_exceeded", `no STUN answer from ${opts.ip}:${opts.port} within ${opts.timeoutMs} ms`)), opts.timeoutMs);
  });
  ended.catch(() => undefined); // observed below; a late error after the answer is of no interest
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const step = <T>(p: Promise<T>) => Promise.race([p, ended.then(() => undefined as T)]);
  try {
    await step(new Promise<void>((resolve) => sock.bind({ port: opts.bindPort ?? 0, exclusive: true }, resolve)));
    await step(new Promise<void>((resolve) => sock.connect(opts.port, opts.ip, resolve)));
    const local = sock.address();
    if (opts.beforeSend) await opts.beforeSend({ address: local.address, port: local.port });
    opts.signal?.throwIfAborted();
    // ICMP errors (port unreachable) arrive as socket errors and end the wait early.
    sock.send(opts.request);
    return { reply: await ended, localPort: local.port };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
    sock.close();
  }
};

export const stunTable = "plexd_stun";

/** `meshPort`: the WireGuard port the datagram must appear to come from. */
export interface StunSnat { localIp: string; localPort: number; server: string; serverPort: number; meshPort: number }

// "table; delete table; table {...}" replaces a leftover table (after a crash) in the same
// atomic transaction instead of failing on it. Every value was validated or chosen here.
const header = `table ip ${stunTable}\ndelete table ip ${stunTable}\n`;

export function renderStunSnat(s: StunSnat): string {
  const rule = `ip saddr ${s.localIp} ip daddr ${s.server} udp sport ${s.localPort} udp dport ${s.serverPort} snat to ${s.localIp}:${s.meshPort}`;
  return `${header}table ip ${stunTable} {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    ${rule}\n  }\n}\n`;
}

export async function setStunSnat(runner: Runner, s: StunSnat | undefined): Promise<void> {
  await runner.run("nft", ["-f", "-"], { input: s ? renderStunSnat(s) : header, timeoutMs: 10_000 });
}

/** Teardown: a table left by a probe cut short, looked up first so only one that exists is reported. */
export async function removeStrayStunSnat(runner: Runner): Promise<boolean> {
  if ((await runner.run("nft", ["list", "table", "ip", stunTable], { allowFailure: true })).exitCode !== 0) return false;
  await runner.run("nft", ["delete", "table", "ip", stunTable]);
  return true;
}
