// wireguard-go's cross-platform UAPI (https://www.wireguard.com/xplatform/), spoken
// directly over its unix socket. It is the same protocol `wg` uses for userspace devices;
// talking it ourselves saves two processes per apply (read and write) and keeps keys in
// memory on a root-only socket. Unlike the config format it can remove a single peer, so
// every change — removals included — is one incremental transaction.
import { createPrivateKey, createPublicKey } from "node:crypto";
import { connect, type Socket } from "node:net";
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

/**
 * hex -> base64 of every key seen in recent answers: a device's keys rarely change between
 * reads, and a lookup costs a fraction of a conversion. Rebuilt from the last answer once
 * it holds several times that answer's keys (rotated keys, removed peers).
 */
let keyMemo = new Map<string, string>();

function keyAt(text: string, at: number, end: number): string {
  const h = text.slice(at, end);
  let v = keyMemo.get(h);
  if (v === undefined) {
    v = b64(h);
    keyMemo.set(h, v);
  }
  return v;
}

function pruneKeyMemo(dev: WgLiveDevice): void {
  if (keyMemo.size <= 8 * dev.peers.length + 64) return;
  keyMemo = new Map();
  for (const p of dev.peers) {
    keyMemo.set(hex(p.publicKey), p.publicKey);
    if (p.presharedKey !== "") keyMemo.set(hex(p.presharedKey), p.presharedKey);
  }
}

export interface GetOptions {
  /** Handshake time and byte counters; ApplyMesh diffs without them. Default true. */
  stats?: boolean;
}

/**
 * A `get` answer parsed line by line as it arrives: wireguard-go writes 1,000 peers in
 * several chunks, and parsing each as it comes hides part of the parse inside that wait.
 * Line names are told apart by their length and checked in place (never sliced); only the
 * values used are. This parse is most of an incremental ApplyMesh's own CPU time.
 */
export class GetParser {
  readonly #dev: WgLiveDevice = { privateKey: "", publicKey: "", listenPort: 0, peers: [] };
  readonly #stats: boolean;
  #peer: WgLivePeer | undefined;
  #rest = "";

  constructor(opts: GetOptions = {}) {
    this.#stats = opts.stats ?? true;
  }

  /** Takes the next chunk of the answer. */
  push(chunk: string): void {
    let at = 0;
    if (this.#rest !== "") {
      // Only the line cut in two is joined: `rest + chunk` would copy the whole chunk again.
      const nl = chunk.indexOf("\n");
      if (nl === -1) {
        this.#rest += chunk;
        return;
      }
      const line = this.#rest + chunk.slice(0, nl);
      this.#rest = "";
      this.#line(line, 0, line.length);
      at = nl + 1;
    }
    for (let end = chunk.indexOf("\n", at); end !== -1; end = chunk.indexOf("\n", at)) {
      if (end !== at) this.#line(chunk, at, end);
      at = end + 1;
    }
    this.#rest = chunk.slice(at);
  }

  // No closures here: this runs for each of ~11,000 lines of a 1,000-peer answer, and two
  // per line were over a megabyte of garbage per read.
  #line(text: string, at: number, end: number): void {
    const eq = text.indexOf("=", at);
    if (eq === -1 || eq > end) return;
    const peer = this.#peer;
    switch (eq - at) {
      case 10:
        if (text.startsWith("public_key", at)) {
          this.#peer = { publicKey: keyAt(text, eq + 1, end), presharedKey: "", endpoint: "", allowedIps: [], keepalive: 0, latestHandshake: 0, rxBytes: 0n, txBytes: 0n };
          this.#dev.peers.push(this.#peer);
        } else if (peer && text.startsWith("allowed_ip", at)) peer.allowedIps.push(text.slice(eq + 1, end));
        return;
      case 13:
        if (peer && text.startsWith("preshared_key", at)) peer.presharedKey = text.startsWith(zeroHex, eq + 1) && end - eq - 1 === 64 ? "" : keyAt(text, eq + 1, end);
        return;
      case 8:
        if (!peer) return;
        if (text.startsWith("endpoint", at)) peer.endpoint = text.slice(eq + 1, end);
        else if (!this.#stats) return;
        else if (text.startsWith("rx_bytes", at)) peer.rxBytes = BigInt(text.slice(eq + 1, end));
        else if (text.startsWith("tx_bytes", at)) peer.txBytes = BigInt(text.slice(eq + 1, end));
        return;
      case 29:
        if (peer && text.startsWith("persistent_keepalive_interval", at)) peer.keepalive = Number(text.slice(eq + 1, end));
        return;
      case 23:
        if (peer && this.#stats && text.startsWith("last_handshake_time_sec", at)) peer.latestHandshake = Number(text.slice(eq + 1, end));
        return;
      case 11:
        if (peer) return;
        if (text.startsWith("private_key", at)) this.#dev.privateKey = b64(text.slice(eq + 1, end));
        else if (text.startsWith("listen_port", at)) this.#dev.listenPort = Number(text.slice(eq + 1, end));
        return;
      case 5:
        if (text.startsWith("errno", at) && !(end - eq === 2 && text.startsWith("0", eq + 1))) throw new PlexdError("internal", `wireguard-go UAPI get: errno ${text.slice(eq + 1, end)}`);
        return;
    }
  }

  finish(): WgLiveDevice {
    if (this.#rest !== "") this.push("\n");
    const dev = this.#dev;
    for (const p of dev.peers) if (p.allowedIps.length > 1) p.allowedIps.sort();
    if (dev.privateKey) dev.publicKey = publicKeyOf(dev.privateKey);
    pruneKeyMemo(dev);
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

/**
 * One kept-open connection per UAPI socket. wireguard-go answers any number of operations on
 * a connection, one after another; reusing it saves a connect per read and per write (a
 * noticeable part of an incremental apply). Operations are queued, one in flight. A kept
 * connection found dead — wireguard-go restarted or was stopped — before it answered a
 * byte is replaced and the operation sent once more: every operation privhelper sends is
 * idempotent (a get, or a set stating whole peers with replace_allowed_ips).
 */
export class UapiConnection {
  #sock: Socket | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string) {}

  exchange(request: string, signal?: AbortSignal, timeoutMs = 30_000, onData?: (chunk: string) => void): Promise<string> {
    const run = this.#queue.then(async () => {
      const reused = this.#sock !== undefined;
      try {
        return await this.#once(request, signal, timeoutMs, onData);
      } catch (err) {
        if (!(reused && err instanceof StaleConnection)) throw err;
        return this.#once(request, signal, timeoutMs, onData);
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.#sock?.destroy();
    this.#sock = undefined;
  }

  #once(request: string, signal: AbortSignal | undefined, timeoutMs: number, onData?: (chunk: string) => void): Promise<string> {
    if (signal?.aborted) return Promise.reject(new PlexdError("cancelled", "UAPI request cancelled"));
    let sock = this.#sock;
    if (!sock) {
      sock = this.#sock = connect(this.path);
      sock.setEncoding("utf8");
      sock.unref(); // an idle connection must not keep privhelper alive
      const s = sock;
      s.on("error", () => undefined); // reported to the operation in flight, if any
      s.on("close", () => {
        if (this.#sock === s) this.#sock = undefined;
      });
    }
    const conn = sock;
    return new Promise((resolve, reject) => {
      let buf = "";
      let answered = false;
      const done = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        conn.off("data", onChunk);
        conn.off("error", onError);
        conn.off("close", onClose);
        if (err) {
          // Whatever the connection holds now is unknown: the next operation starts afresh.
          if (this.#sock === conn) this.#sock = undefined;
          conn.destroy();
          reject(err);
        } else resolve(buf);
      };
      const onAbort = () => done(new PlexdError("cancelled", "UAPI request cancelled"));
      const onError = (e: Error) => done(answered ? PlexdError.from(e) : new StaleConnection(PlexdError.from(e)));
      const onClose = () => done(answered ? new PlexdError("unavailable", `UAPI ${this.path}: closed early`) : new StaleConnection(new PlexdError("unavailable", `UAPI ${this.path}: closed early`)));
      const onChunk = (d: string) => {
        answered = true;
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
      };
      const timer = setTimeout(() => done(new PlexdError("deadline_exceeded", `UAPI ${this.path}: no answer in ${timeoutMs} ms`)), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      conn.on("data", onChunk);
      conn.on("error", onError);
      conn.on("close", onClose);
      conn.write(request);
    });
  }
}

/** The operation failed before a byte of answer: a fresh connection may be tried once. */
class StaleConnection extends PlexdError {
  constructor(cause: PlexdError) {
    super(cause.code, cause.message, { cause });
  }
}

/** One request/response exchange on a connection of its own; the response ends with an empty line. */
export async function uapiExchange(socketPath: string, request: string, signal?: AbortSignal, timeoutMs = 30_000, onData?: (chunk: string) => void): Promise<string> {
  const conn = new UapiConnection(socketPath);
  try {
    return await conn.exchange(request, signal, timeoutMs, onData);
  } finally {
    conn.close();
  }
}

export function uapiBackend(socketPath: (iface: string) => string): WgBackend {
  const conns = new Map<string, UapiConnection>();
  const conn = (iface: string): UapiConnection => {
    const path = socketPath(iface);
    let c = conns.get(path);
    if (!c) conns.set(path, (c = new UapiConnection(path)));
    return c;
  };
  return {
    async show(iface, signal, opts) {
      try {
        const parser = new GetParser(opts);
        await conn(iface).exchange("get=1\n\n", signal, undefined, (chunk) => parser.push(chunk));
        return parser.finish();
      } catch (err) {
        const code = PlexdError.from(err).code;
        if (code === "not_found" || code === "unavailable") return undefined;
        throw err;
      }
    },
    async apply(iface, change, _want, signal) {
      const reply = await conn(iface).exchange(renderSet(change), signal);
      const errno = /errno=(-?\d+)/.exec(reply)?.[1];
      if (errno !== "0") throw new PlexdError("internal", `wireguard-go UAPI set on ${iface}: errno ${errno ?? "missing"}`);
    },
  };
}
