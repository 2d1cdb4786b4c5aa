// wireguard-go's cross-platform UAPI (https://www.wireguard.com/xplatform/), spoken
// directly over its unix socket. It is the same protocol `wg` uses for userspace devices;
// talking it ourselves saves two processes per apply (read and write) and keeps keys in
// memory on a root-only socket. Unlike the config format it can remove a single peer, so
// every change — removals included — is one incremental transaction.
import { createPrivateKey, createPublicKey } from "node:crypto";
import { connect } from "node:net";
import { PlexdError } from "../../proto/lib/errors.js";
import type { WgBackend, WgChange, WgLiveDevice, WgLivePeer } from "./wg.js";

const hex = (b64: string) => Buffer.from(b64, "base64").toString("hex");
const b64 = (h: string) => Buffer.from(h, "hex").toString("base64");
const zeroHex = "0".repeat(64);

/** The last derivation: every read of a device derives the same key again (~1 ms each). */
let lastDerived: [string, string] | undefined;

/** Curve25519 public key of a private key (UAPI `get` does not return it). */
export function publicKeyOf(privateB64: string): string {
  if (lastDerived?.[0] === privateB64) return lastDerived[1];
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), Buffer.from(privateB64, "base64")]);
  const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ format: "der", type: "spki" });
  const pub = spki.subarray(-32).toString("base64");
  lastDerived = [privateB64, pub];
  return pub;
}

/** hex -> base64 of the keys of the last get: a device's keys rarely change between reads. */
let lastKeys = new Map<string, string>();

/**
 * A `get` answer parsed line by line as it arrives: wireguard-go writes 1,000 peers in ~80
 * chunks over several milliseconds, and parsing each as it comes hides the parse inside
 * that wait instead of adding it after.
 */
export class GetParser {
  readonly #dev: WgLiveDevice = { privateKey: "", publicKey: "", listenPort: 0, peers: [] };
  #peer: WgLivePeer | undefined;
  #rest = "";
  #keys = new Map<string, string>();

  #b64(h: string): string {
    let v = this.#keys.get(h) ?? lastKeys.get(h);
    if (v === undefined) v = b64(h);
    this.#keys.set(h, v);
    return v;
  }

  /** Takes the next chunk of the answer. */
  push(chunk: string): void {
    const text = this.#rest === "" ? chunk : this.#rest + chunk;
    let at = 0;
    for (let end = text.indexOf("\n", at); end !== -1; end = text.indexOf("\n", at)) {
      this.#line(text, at, end);
      at = end + 1;
    }
    this.#rest = text.slice(at);
  }

  #line(text: string, at: number, end: number): void {
    const eq = text.indexOf("=", at);
    if (end === at || eq === -1 || eq > end) return;
    const k = text.slice(at, eq);
    const v = text.slice(eq + 1, end);
    const dev = this.#dev;
    const peer = this.#peer;
    if (k === "errno") {
      if (v !== "0") throw new PlexdError("internal", `wireguard-go UAPI get: errno ${v}`);
    } else if (k === "public_key") {
      this.#peer = { publicKey: this.#b64(v), presharedKey: "", endpoint: "", allowedIps: [], keepalive: 0, latestHandshake: 0, rxBytes: 0n, txBytes: 0n };
      dev.peers.push(this.#peer);
    } else if (!peer) {
      if (k === "private_key") dev.privateKey = b64(v);
      else if (k === "listen_port") dev.listenPort = Number(v);
    } else if (k === "preshared_key") peer.presharedKey = v === zeroHex ? "" : this.#b64(v);
    else if (k === "endpoint") peer.endpoint = v;
    else if (k === "allowed_ip") peer.allowedIps.push(v);
    else if (k === "last_handshake_time_sec") peer.latestHandshake = Number(v);
    else if (k === "rx_bytes") peer.rxBytes = BigInt(v);
    else if (k === "tx_bytes") peer.txBytes = BigInt(v);
    else if (k === "persistent_keepalive_interval") peer.keepalive = Number(v);
  }

  finish(): WgLiveDevice {
    if (this.#rest !== "") this.push("\n");
    const dev = this.#dev;
    for (const p of dev.peers) if (p.allowedIps.length > 1) p.allowedIps.sort();
    if (dev.privateKey) dev.publicKey = publicKeyOf(dev.privateKey);
    lastKeys = this.#keys;
    return dev;
  }
}

export function parseGet(text: string): WgLiveDevice {
  const p = new GetParser();
  p.push(text);
  return p.finish();
}

export function renderSet(change: WgChange): string {
  const out = ["set=1"];
  if (change.privateKey !== undefined) out.push(`private_key=${hex(change.privateKey)}`);
  if (change.listenPort !== undefined) out.push(`listen_port=${change.listenPort}`);
  for (const k of change.remove) out.push(`public_key=${hex(k)}`, "remove=true");
  for (const p of change.upsert) {
    out.push(`public_key=${hex(p.publicKey)}`, `preshared_key=${p.presharedKey ? hex(p.presharedKey) : zeroHex}`);
    if (p.endpoint !== "") out.push(`endpoint=${p.endpoint}`);
    out.push(`persistent_keepalive_interval=${p.keepalive}`, "replace_allowed_ips=true", ...p.allowedIps.map((a) => `allowed_ip=${a}`));
  }
  return out.join("\n") + "\n\n";
}

/** One request/response exchange; the response ends with an empty line. `onData` sees it as it arrives. */
export function uapiExchange(socketPath: string, request: string, signal?: AbortSignal, timeoutMs = 30_000, onData?: (chunk: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = "";
    const done = (err?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      sock.destroy();
      if (err) reject(err);
      else resolve(buf);
    };
    const onAbort = () => done(new PlexdError("cancelled", "UAPI request cancelled"));
    const timer = setTimeout(() => done(new PlexdError("deadline_exceeded", `UAPI ${socketPath}: no answer in ${timeoutMs} ms`)), timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(request));
    sock.on("data", (d: string) => {
      if (onData === undefined) buf += d;
      else {
        try {
          onData(d);
        } catch (err) {
          done(PlexdError.from(err));
          return;
        }
        // Only the tail is kept: enough to see the terminating empty line.
        buf = (buf + d).slice(-2);
      }
      if (buf.endsWith("\n\n")) done();
    });
    sock.on("error", (e) => done(PlexdError.from(e)));
    sock.on("close", () => done(buf.endsWith("\n\n") ? undefined : new PlexdError("unavailable", `UAPI ${socketPath}: closed early`)));
  });
}

export function uapiBackend(socketPath: (iface: string) => string): WgBackend {
  return {
    async show(iface, signal) {
      try {
        const parser = new GetParser();
        await uapiExchange(socketPath(iface), "get=1\n\n", signal, undefined, (chunk) => parser.push(chunk));
        return parser.finish();
      } catch (err) {
        if (PlexdError.from(err).code === "not_found" || PlexdError.from(err).code === "unavailable") return undefined;
        throw err;
      }
    },
    async apply(iface, change, _want, signal) {
      const reply = await uapiExchange(socketPath(iface), renderSet(change), signal);
      const errno = /errno=(-?\d+)/.exec(reply)?.[1];
      if (errno !== "0") throw new PlexdError("internal", `wireguard-go UAPI set on ${iface}: errno ${errno ?? "missing"}`);
    },
  };
}
