// Tools for flooding privhelper and watching it cope: an RSS sampler in a process of its own
// (the test's event loop is busy with the flood and would sample late), a quiet caller on its
// own connection that must keep being served, a raw HTTP/2 client that opens thousands of
// streams on one connection, and a request with a huge field.
import { connect as http2Connect, constants as h2 } from "node:http2";
import { connect as netConnect } from "node:net";
import type { DescMethod } from "@bufbuild/protobuf";
import { spawnInNamespace } from "../harness/index.js";
import { encodeRequest, methodByName, PrivCaller, servicePath } from "./priv-caller.js";

export interface RssSample {
  /** Date.now() of the sample. */
  at: number;
  mib: number;
}

export interface RssSampler {
  samples(): RssSample[];
  between(from: number, to: number): RssSample[];
  stop(): Promise<void>;
}

/** Samples VmRSS of `pid` every `everyMs` from a separate node process. */
export function startRssSampler(pid: number, everyMs = 100): RssSampler {
  const script = `const fs = require("node:fs"); const pid = process.argv[1];
setInterval(() => { try { const m = /^VmRSS:\\s+(\\d+) kB$/m.exec(fs.readFileSync("/proc/" + pid + "/status", "utf8")); if (m) console.log(Date.now() + " " + m[1]); } catch { process.exit(0); } }, ${everyMs});`;
  const p = spawnInNamespace({ name: "rss-sampler", argv: ["node", "-e", script, String(pid)] });
  const samples = (): RssSample[] =>
    p
      .stdout()
      .split("\n")
      .filter((l) => /^\d+ \d+$/.test(l))
      .map((l) => {
        const [at, kb] = l.split(" ").map(Number);
        return { at: at!, mib: kb! / 1024 };
      });
  return {
    samples,
    between: (from, to) => samples().filter((s) => s.at >= from && s.at <= to),
    stop: async () => {
      await p.kill("SIGTERM", { graceMs: 2_000 });
    },
  };
}

export interface QuietReport {
  calls: number;
  /** Calls that failed or took longer than the limit, with what they saw. */
  late: string[];
  maxMs: number;
}

/**
 * A quiet caller on a connection of its own: GetInfo then ReadMesh, over and over, until
 * `stop` is aborted. Each must answer OK within `limitMs`.
 */
export async function quietCaller(socket: string, iface: string, stop: AbortSignal, limitMs = 5_000): Promise<QuietReport> {
  const caller = new PrivCaller(socket, { ownConnection: true });
  const report: QuietReport = { calls: 0, late: [], maxMs: 0 };
  const calls: [DescMethod, Record<string, unknown>][] = [
    [methodByName("GetInfo"), {}],
    [methodByName("ReadMesh"), { interface: iface }],
  ];
  try {
    while (!stop.aborted) {
      for (const [m, req] of calls) {
        // The deadline is generous so that a late answer is measured, not cut off.
        const r = await caller.call(m, req, { deadlineMs: limitMs * 4 });
        report.calls++;
        report.maxMs = Math.max(report.maxMs, r.ms);
        if (r.code !== 0 || r.ms > limitMs) report.late.push(`${m.name}: status ${r.code} after ${r.ms} ms ${r.details}`);
      }
      await new Promise((res) => setTimeout(res, 200));
    }
  } finally {
    caller.close();
  }
  return report;
}

/** gRPC framing: compressed flag 0, big-endian length, message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/**
 * Opens `count` streams to `method` on ONE HTTP/2 connection, all of them before any request
 * is sent (so they are open at once), then sends each its request. Resolves with how the
 * streams ended: "grpc-status N", or "rst N" for a stream the server reset.
 */
export async function streamFlood(socket: string, method: string, request: Record<string, unknown>, count: number, timeoutMs = 120_000): Promise<Record<string, number>> {
  const frame = grpcFrame(encodeRequest(methodByName(method), request));
  const session = http2Connect("http://localhost", { createConnection: () => netConnect(socket) });
  session.on("error", () => undefined); // each stream reports its own end
  const outcomes: Record<string, number> = {};
  const count1 = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);
  try {
    await new Promise<void>((resolve, reject) => {
      session.once("connect", () => resolve());
      session.once("error", reject);
    });
    const ended: Promise<void>[] = [];
    const streams = Array.from({ length: count }, () => {
      const s = session.request(
        { [h2.HTTP2_HEADER_METHOD]: "POST", [h2.HTTP2_HEADER_PATH]: `${servicePath}/${method}`, "content-type": "application/grpc", te: "trailers" },
        { endStream: false },
      );
      let status: string | undefined;
      s.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) status = `grpc-status ${String(headers["grpc-status"])}`;
      });
      s.on("trailers", (trailers) => {
        if (trailers["grpc-status"] !== undefined) status = `grpc-status ${String(trailers["grpc-status"])}`;
      });
      s.on("data", () => undefined);
      s.on("error", () => undefined);
      ended.push(
        new Promise((res) =>
          s.once("close", () => {
            count1(status ?? `rst ${s.rstCode}`);
            res();
          }),
        ),
      );
      return s;
    });
    // Every stream is open; now the requests.
    for (const s of streams) if (!s.closed) s.end(frame);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(ended), new Promise((res) => (timer = setTimeout(res, timeoutMs)))]);
    clearTimeout(timer);
    const open = streams.filter((s) => !s.closed).length;
    if (open > 0) outcomes[`still open after ${timeoutMs} ms`] = open;
  } finally {
    session.destroy();
  }
  return outcomes;
}

/**
 * A valid `method` request plus one unknown length-delimited field (number 1000) of `bytes`
 * bytes: a parser that accepts the size sees a well-formed message.
 */
export function hugeRequest(method: string, request: Record<string, unknown>, bytes: number): Buffer {
  const valid = encodeRequest(methodByName(method), request);
  const tag = [0xc2, 0x3e]; // (1000 << 3) | 2 as a varint
  const len: number[] = [];
  for (let n = bytes; ; ) {
    const b = n % 128;
    n = Math.floor(n / 128);
    len.push(n > 0 ? b | 0x80 : b);
    if (n === 0) break;
  }
  return Buffer.concat([valid, Buffer.from(tag), Buffer.from(len), Buffer.alloc(bytes, 0x61)]);
}
