// The ingress data path: one TCP listener per public port, a rule picked per connection (by SNI
// when the port is shared), then TLS ended here (terminate) or the bytes passed on untouched
// (passthrough) to the rule's target on the mesh. Either side ending or failing closes both.
import { createServer, connect, type Server, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import type { IngressRule } from "./ingress-rules.js";
import { maxHelloBytes, peekSni } from "./ingress-sni.js";

export interface IngressLimits {
  maxConnectionsPerRule: number;
  dialTimeoutMs: number;
}

export const counterNames = ["connections_open", "connections_total", "refused_over_cap", "dial_failures", "tls_failures", "bytes_in", "bytes_out"] as const;
export type RuleCounters = Record<(typeof counterNames)[number], number>;
export const zeroCounters = (): RuleCounters => ({ connections_open: 0, connections_total: 0, refused_over_cap: 0, dial_failures: 0, tls_failures: 0, bytes_in: 0, bytes_out: 0 });

/** One connection: the client side (raw or TLS) and, once dialled, the target. */
interface Pair {
  client: Socket | TLSSocket;
  raw: Socket;
  upstream: Socket | undefined;
}

/** A running rule: its connections and counters. Bytes of open connections are read live. */
export class RuleRuntime {
  readonly rule: IngressRule;
  readonly #pairs = new Set<Pair>();
  readonly #counters = zeroCounters();

  constructor(rule: IngressRule) {
    this.rule = rule;
  }

  counters(): RuleCounters {
    let [bytesIn, bytesOut] = [this.#counters.bytes_in, this.#counters.bytes_out];
    for (const p of this.#pairs) {
      bytesIn += p.upstream?.bytesWritten ?? 0;
      bytesOut += p.upstream?.bytesRead ?? 0;
    }
    return { ...this.#counters, connections_open: this.#pairs.size, bytes_in: bytesIn, bytes_out: bytesOut };
  }

  /** Removing a rule closes all its connections. */
  closeAll(): void {
    for (const p of [...this.#pairs]) this.#end(p);
  }

  /** Takes a connection routed to this rule; `head` holds bytes already read for the SNI peek. */
  accept(raw: Socket, head: Buffer | undefined, limits: IngressLimits): void {
    // Over the cap: closed at once, before any byte goes anywhere.
    if (this.#pairs.size >= limits.maxConnectionsPerRule) {
      this.#counters.refused_over_cap++;
      raw.destroy();
      return;
    }
    this.#counters.connections_total++;
    const pair: Pair = { client: raw, raw, upstream: undefined };
    this.#pairs.add(pair);
    raw.once("close", () => this.#end(pair));
    if (this.rule.mode === "passthrough") {
      this.#dial(pair, head, limits);
      return;
    }
    // A socket whose first bytes were already read cannot be handed to TLS as it is: replay them.
    const tls = new TLSSocket(head === undefined ? raw : replay(raw, head), { isServer: true, secureContext: this.rule.tls! });
    pair.client = tls;
    const timer = setTimeout(() => tls.destroy(new Error("TLS handshake timed out")), limits.dialTimeoutMs);
    tls.once("secure", () => {
      clearTimeout(timer);
      this.#dial(pair, undefined, limits);
    });
    tls.on("error", () => {
      clearTimeout(timer);
      if (pair.upstream === undefined) this.#counters.tls_failures++;
      this.#end(pair);
    });
    tls.once("close", () => this.#end(pair));
  }

  #dial(pair: Pair, head: Buffer | undefined, limits: IngressLimits): void {
    if (!this.#pairs.has(pair)) return;
    const up = connect({ host: this.rule.targetHost, port: this.rule.targetPort });
    pair.upstream = up;
    let connected = false;
    const timer = setTimeout(() => up.destroy(new Error("dial timed out")), limits.dialTimeoutMs);
    up.once("connect", () => {
      connected = true;
      clearTimeout(timer);
      if (head !== undefined) up.write(head);
      pair.client.pipe(up);
      up.pipe(pair.client);
      pair.client.resume();
    });
    up.on("error", () => {
      clearTimeout(timer);
      if (!connected) this.#counters.dial_failures++;
      this.#end(pair);
    });
    up.once("close", () => this.#end(pair));
  }

  #end(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return;
    this.#counters.bytes_in += pair.upstream?.bytesWritten ?? 0;
    this.#counters.bytes_out += pair.upstream?.bytesRead ?? 0;
    pair.upstream?.destroy();
    pair.client.destroy();
    pair.raw.destroy();
  }
}

/** A duplex that yields `head`, then whatever `raw` reads; writes go to `raw`. */
function replay(raw: Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read: () => void raw.resume(),
    write: (chunk: Buffer, _enc, cb) => void raw.write(chunk, cb),
    final: (cb) => {
      raw.end();
      cb();
    },
    destroy: (err, cb) => {
      raw.destroy();
      cb(err);
    },
  });
  d.push(head);
  raw.on("data", (c: Buffer) => {
    if (!d.push(c)) raw.pause();
  });
  raw.once("end", () => d.push(null));
  raw.once("close", () => d.destroy());
  return d;
}

/** One public port: its listener and the rules sharing it. */
export class PortListener {
  readonly publicPort: number;
  readonly rules = new Map<string, RuleRuntime>();
  /** Connections still being peeked at (not yet given to a rule). */
  readonly #pending = new Set<Socket>();
  readonly #server: Server;
  readonly #limits: () => IngressLimits;
  localPort = 0;
  /** Connections closed because no rule's sni matched (or the hello never came). */
  unmatched = 0;

  constructor(publicPort: number, limits: () => IngressLimits) {
    this.publicPort = publicPort;
    this.#limits = limits;
    this.#server = createServer((s) => this.#onConnection(s));
  }

  /** Binds `host:port` (port 0: the kernel picks, for a public port below 1024); resolves with the bound port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen({ host, port, exclusive: true }, () => {
        this.#server.off("error", reject);
        // An accept failure (EMFILE under a flood) must not take the agent down: the next accept retries.
        this.#server.on("error", () => undefined);
        const a = this.#server.address();
        this.localPort = typeof a === "object" && a !== null ? a.port : 0;
        resolve(this.localPort);
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.#pending) s.destroy();
    for (const r of this.rules.values()) r.closeAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #onConnection(raw: Socket): void {
    raw.on("error", () => raw.destroy());
    const rules = [...this.rules.values()];
    const only = rules.length === 1 ? rules[0] : undefined;
    if (only !== undefined && only.rule.sni === undefined) {
      only.accept(raw, undefined, this.#limits());
      return;
    }
    this.#pending.add(raw);
    let head = Buffer.alloc(0);
    const unmatched = (): void => {
      this.unmatched++;
      raw.destroy();
    };
    const timer = setTimeout(unmatched, this.#limits().dialTimeoutMs);
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d]);
      const p = peekSni(head);
      if (p.kind === "more" && head.length < maxHelloBytes) return;
      raw.off("data", onData);
      raw.pause();
      clearTimeout(timer);
      this.#pending.delete(raw);
      const rule = p.kind === "hello" && p.sni !== undefined ? [...this.rules.values()].find((r) => r.rule.sni === p.sni) : undefined;
      if (rule === undefined) unmatched();
      else rule.accept(raw, head, this.#limits());
    };
    raw.on("data", onData);
    raw.once("close", () => {
      clearTimeout(timer);
      this.#pending.delete(raw);
    });
  }
}
