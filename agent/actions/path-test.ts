import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { randomBytes } from "node:crypto";
import type { Logger } from "../util/log.js";

// diagnostics.path_test (docs/actions.md "Path tests"): a UDP test between two mesh nodes,
// agent to agent, needing no privilege. Every agent listens on its mesh IP (WireGuard
// guarantees the source address of what arrives there) at actions.path_test.port. A tester asks
// it to open a session; the responder opens a fresh port on its mesh IP, answering only the
// tester's address, for the test's duration, and within its own packets/s and bytes/s caps:
//
//   tester -> port   {t:"open", id, mode, duration_ms}     responder -> {t:"opened", id, port}
//   udp_echo:   tester -> session {t:"e", s, pad}          responder echoes the datagram
//   throughput: tester -> session {t:"d", pad}             counted; {t:"fin"} -> {t:"sum", packets, bytes}

export interface PathTestCaps {
  maxPacketsPerSecond: number;
  maxBytesPerSecond: number;
  maxDurationMs: number;
}

/** Token buckets for packets and bytes, refilled continuously, one second of burst. */
export class RateCap {
  #packets: number;
  #bytes: number;
  #at: number;
  constructor(
    readonly pps: number,
    readonly bps: number,
    readonly now: () => number = () => performance.now(),
  ) {
    this.#packets = pps;
    this.#bytes = bps;
    this.#at = now();
  }

  take(bytes: number): boolean {
    const t = this.now();
    const dt = (t - this.#at) / 1000;
    this.#at = t;
    this.#packets = Math.min(this.pps, this.#packets + dt * this.pps);
    this.#bytes = Math.min(this.bps, this.#bytes + dt * this.bps);
    if (this.#packets < 1 || this.#bytes < bytes) return false;
    this.#packets -= 1;
    this.#bytes -= bytes;
    return true;
  }
}

const parse = (b: Buffer): Record<string, unknown> | undefined => {
  try {
    const v = JSON.parse(b.toString("utf8")) as unknown;
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

const bind = (s: Socket, address: string, port: number): Promise<void> =>
  new Promise((resolve, reject) => {
    s.once("error", reject);
    s.bind(port, address, () => {
      s.off("error", reject);
      resolve();
    });
  });

/** The answering side: one listener on the mesh IP, one short-lived socket per session. */
export class PathTestResponder {
  #listener: Socket | undefined;
  readonly #sessions = new Set<Socket>();
  /** "<tester address>/<test id>" → session port (0 while it is being opened). */
  readonly #opened = new Map<string, number>();
  constructor(
    readonly caps: () => PathTestCaps,
    readonly log: Logger,
  ) {}

  /** Binds meshIp:port; rejects while the address is not on an interface yet (caller retries). */
  async listen(meshIp: string, port: number): Promise<void> {
    const s = createSocket("udp4");
    await bind(s, meshIp, port).catch((err: unknown) => {
      s.close();
      throw err;
    });
    s.on("error", () => undefined);
    s.on("message", (msg, rinfo) => void this.#open(meshIp, s, msg, rinfo));
    this.#listener = s;
    this.log.info({ address: `${meshIp}:${port}` }, "path test responder listening");
  }

  async #open(meshIp: string, listener: Socket, msg: Buffer, from: RemoteInfo): Promise<void> {
    const req = parse(msg);
    if (req?.t !== "open" || typeof req.id !== "string" || (req.mode !== "udp_echo" && req.mode !== "throughput")) return;
    const key = `${from.address}/${req.id}`;
    const known = this.#opened.get(key);
    if (known === 0) return;
    if (known !== undefined) {
      // The tester asked again (its datagram or our answer was lost): same session.
      listener.send(JSON.stringify({ t: "opened", id: req.id, port: known }), from.port, from.address);
      return;
    }
    const caps = this.caps();
    const durationMs = Math.min(Number(req.duration_ms) || 0, caps.maxDurationMs);
    if (durationMs <= 0 || this.#sessions.size >= 4) return;
    this.#opened.set(key, 0);
    const session = createSocket("udp4");
    session.on("error", () => undefined);
    await bind(session, meshIp, 0);
    this.#sessions.add(session);
    const cap = new RateCap(caps.maxPacketsPerSecond, caps.maxBytesPerSecond);
    const count = { packets: 0, bytes: 0 };
    session.on("message", (m, r) => {
      // Only the tester's own address; every test datagram counts against the caps.
      if (r.address !== from.address) return;
      if (m.length < 200 && m[0] === 0x7b && parse(m)?.t === "fin") {
        session.send(JSON.stringify({ t: "sum", ...count }), r.port, r.address);
        return;
      }
      if (!cap.take(m.length)) return;
      count.packets++;
      count.bytes += m.length;
      if (req.mode === "udp_echo") session.send(m, r.port, r.address);
    });
    // Open for the test and a grace for the last replies, then gone.
    this.#opened.set(key, session.address().port);
    setTimeout(() => {
      this.#opened.delete(key);
      // close() may have ended it already.
      if (this.#sessions.delete(session)) session.close();
    }, durationMs + 3000).unref();
    this.log.info({ peer: from.address, mode: req.mode, duration_ms: durationMs }, "path test session opened");
    listener.send(JSON.stringify({ t: "opened", id: req.id, port: session.address().port }), from.port, from.address);
  }

  close(): void {
    this.#listener?.close();
    this.#listener = undefined;
    for (const s of this.#sessions) s.close();
    this.#sessions.clear();
  }
}

export interface PathTestResult {
  mode: "udp_echo" | "throughput";
  sent: number;
  received: number;
  loss_percent: number;
  rtt_ms?: { min: number; avg: number; p99: number };
  jitter_ms?: number;
  /** Bits per second the peer received (throughput) or got back to us (echo). */
  goodput_bps: number;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/** The testing side: opens a session at `peerIp:port` and runs `mode` for `durationMs` at `rate` packets/s. */
export async function runPathTest(o: { meshIp: string; peerIp: string; port: number; mode: "udp_echo" | "throughput"; durationMs: number; rate: number; size: number; signal: AbortSignal }): Promise<PathTestResult> {
  const s = createSocket("udp4");
  s.on("error", () => undefined);
  try {
    await bind(s, o.meshIp, 0);
    const id = randomBytes(8).toString("hex");
    const replies: ((m: Buffer) => void)[] = [];
    s.on("message", (m) => replies.forEach((fn) => fn(m)));
    // A lost datagram (or a responder still starting) must not fail the test: asked again every 500 ms.
    const answer = (want: string, timeoutMs: number, send: () => void) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const again = setInterval(send, 500);
        const timer = setTimeout(() => {
          clearInterval(again);
          reject(new Error(`no ${want} from ${o.peerIp} within ${timeoutMs} ms (is path_test enabled there, and does policy allow UDP between the nodes?)`));
        }, timeoutMs);
        const fn = (m: Buffer): void => {
          const p = m[0] === 0x7b && m.length < 200 ? parse(m) : undefined;
          if (p?.t !== want) return;
          clearTimeout(timer);
          clearInterval(again);
          replies.splice(replies.indexOf(fn), 1);
          resolve(p);
        };
        replies.push(fn);
        send();
      });
    const opened = await answer("opened", 3000, () => s.send(JSON.stringify({ t: "open", id, mode: o.mode, duration_ms: o.durationMs }), o.port, o.peerIp));
    const port = Number(opened.port);
    const sentAt = new Map<number, number>();
    const rtts: number[] = [];
    let echoedBytes = 0;
    s.on("message", (m) => {
      if (o.mode !== "udp_echo" || m[0] !== 0x7b) return;
      const seq = Number(/"s":(\d+)/.exec(m.subarray(0, 40).toString())?.[1]);
      const t0 = sentAt.get(seq);
      if (t0 === undefined) return;
      sentAt.delete(seq);
      rtts.push(performance.now() - t0);
      echoedBytes += m.length;
    });
    const pad = "x".repeat(Math.max(0, o.size - 40));
    const start = performance.now();
    let sent = 0;
    while (!o.signal.aborted) {
      const due = Math.floor(((performance.now() - start) / 1000) * o.rate);
      if (performance.now() - start >= o.durationMs) break;
      for (; sent < due; sent++) {
        sentAt.set(sent, performance.now());
        s.send(o.mode === "udp_echo" ? `{"t":"e","s":${sent},"p":"${pad}"}` : `{"t":"d","p":"${pad}"}`, port, o.peerIp);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const elapsed = (performance.now() - start) / 1000;
    if (o.mode === "udp_echo") {
      await new Promise((r) => setTimeout(r, 1000)); // the last replies
      const sorted = [...rtts].sort((a, b) => a - b);
      const jitter = rtts.length > 1 ? rtts.slice(1).reduce((acc, r, i) => acc + Math.abs(r - rtts[i]!), 0) / (rtts.length - 1) : 0;
      return {
        mode: o.mode,
        sent,
        received: rtts.length,
        loss_percent: sent === 0 ? 100 : round(((sent - rtts.length) / sent) * 100),
        rtt_ms: sorted.length === 0 ? { min: 0, avg: 0, p99: 0 } : { min: round(sorted[0]!), avg: round(sorted.reduce((a, b) => a + b, 0) / sorted.length), p99: round(sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!) },
        jitter_ms: round(jitter),
        goodput_bps: Math.round((echoedBytes * 8) / elapsed),
      };
    }
    const sum = await answer("sum", 3000, () => s.send(JSON.stringify({ t: "fin" }), port, o.peerIp));
    const received = Number(sum.packets);
    return { mode: o.mode, sent, received, loss_percent: sent === 0 ? 100 : round(((sent - received) / sent) * 100), goodput_bps: Math.round((Number(sum.bytes) * 8) / elapsed) };
  } finally {
    s.close();
  }
}
