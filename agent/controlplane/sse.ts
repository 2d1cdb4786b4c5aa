import http from "node:http";
import https from "node:https";
import { createGunzip, type Gunzip } from "node:zlib";
import { parseRetryAfter } from "./backoff.js";
import { maxEnvelopeBytes } from "./envelope.js";
import { createEventStreamDecoder, type SseFrame } from "./sse-decoder.js";
import { isLoopbackHost } from "../../proto/lib/net.js";
import { cpTlsOptions } from "./tls.js";

// One connection of the event stream (docs/architecture.md#the-control-plane-channel). Framing is
// eventsource-parser's (full W3C rules: LF/CRLF/CR, multi-line data, comments, BOM) behind
// sse-decoder.ts; this module only owns the HTTP side, the timeouts and in-order delivery in
// batches: the events that arrived together are handed over together, so their bookkeeping
// reaches the disk in one write (replay-journal.ts). node:http rather than fetch:
// Node 20's fetch takes no private CA and gives no byte-level idle detection.
// It never retries: it reports how the connection ended and the supervisor (event-stream.ts)
// decides what that means.

export type StreamEnd =
  /** The server closed a 200 stream cleanly. */
  | "ended"
  /** A response other than 200 arrived; see `status`. */
  | "http_status"
  /** 200 with a Content-Type other than text/event-stream. */
  | "bad_content_type"
  | "network_error"
  /** No response headers within requestTimeoutMs (or no TCP connect within connectTimeoutMs). */
  | "request_timeout"
  /** No bytes at all, comments included, for idleTimeoutMs. */
  | "idle_timeout"
  | "aborted"
  /** Unusable stream: broken gzip, a disallowed URL. */
  | "protocol_error"
  /** onEvent threw; the stream is closed so the event is not silently skipped. */
  | "handler_error";

export interface StreamResult {
  /** HTTP status, or 0 when no response arrived. */
  status: number;
  end: StreamEnd;
  /** Retry-After in seconds, when a non-200 response carried one. */
  retryAfterSec?: number;
  /** First 4096 bytes of a non-200 body, for the log (2.4). */
  body?: string;
  error?: Error;
}

export interface OpenEventStreamOptions {
  url: string | URL;
  /** Authorization, User-Agent and the like. */
  headers?: Record<string, string>;
  /** PEM bundle added to the system roots. */
  ca?: string | Buffer;
  lastEventId?: string | undefined;
  /** 90 s in production (2.6). */
  idleTimeoutMs: number;
  /** Time to response headers; 30 s in production (2.6). */
  requestTimeoutMs: number;
  /** TCP connect timeout; 10 s (2.6). */
  connectTimeoutMs?: number;
  signal: AbortSignal;
  /** Called once the server answered 200 with text/event-stream. */
  onOpen?: () => void;
  /**
   * Called with the events (those with data, and oversize ones by id) that arrived since the
   * last call, in stream order. If it returns a promise, nothing further is delivered until it
   * settles; events that arrive meanwhile are queued (the socket is paused once 4 MiB are) and
   * delivered together next.
   */
  onEvents: (frames: SseFrame[]) => void | Promise<void>;
  onComment?: () => void;
  /** Cap on one event in characters; a larger one is skipped and delivered as `oversize`. */
  maxEventChars?: number;
}

/** An envelope's cap plus room for the `id:` and `event:` lines around it. */
export const defaultMaxEventChars = maxEnvelopeBytes + 4096;
const maxErrorBody = 4096;
/** Decoded events waiting while a batch is handled; beyond this the socket is paused. */
const maxQueuedChars = 4 * 1024 * 1024;

// Last-Event-ID is only sent when it is a plain header token; an id the CP would not recognise
// costs nothing but a replay gap, while a CR/LF in a header must never be written.
const headerSafe = /^[\x21-\x7e]{1,128}$/;

export function openEventStream(o: OpenEventStreamOptions): Promise<StreamResult> {
  return new Promise<StreamResult>((resolve) => {
    if (o.signal.aborted) {
      resolve({ status: 0, end: "aborted" });
      return;
    }
    let url: URL;
    try {
      url = new URL(o.url);
    } catch (err) {
      resolve({ status: 0, end: "protocol_error", error: err as Error });
      return;
    }
    const isHttps = url.protocol === "https:";
    if (!isHttps && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
      resolve({ status: 0, end: "protocol_error", error: new Error("event stream URL must be https:// (http:// only for loopback)") });
      return;
    }

    const headers: Record<string, string> = {
      Accept: "text/event-stream",
      "Accept-Encoding": "gzip",
      "Cache-Control": "no-cache",
      ...o.headers,
    };
    if (o.lastEventId !== undefined && headerSafe.test(o.lastEventId)) headers["Last-Event-ID"] = o.lastEventId;

    let status = 0;
    let res: http.IncomingMessage | undefined;
    let ending: StreamResult | undefined;
    let connectTimer: NodeJS.Timeout | undefined;
    let idleTimer: NodeJS.Timeout | undefined;
    let gunzip: Gunzip | undefined;
    const queue: SseFrame[] = [];
    /** Characters held in `queue`; over maxQueuedChars the socket is paused until it drains. */
    let queuedChars = 0;
    let working = false;
    let drained: Promise<void> = Promise.resolve();

    const end = (r: StreamResult): void => {
      if (ending !== undefined) return;
      ending = r;
      clearTimeout(requestTimer);
      clearTimeout(connectTimer);
      clearTimeout(idleTimer);
      o.signal.removeEventListener("abort", onAbort);
      if (r.end === "aborted") queue.length = 0;
      req.destroy();
      gunzip?.destroy();
      // Events that were already complete are still delivered (in order) before the caller
      // learns that the stream is over, so it never runs two streams' handlers at once.
      // work() turns every handler failure into end(), so drained never rejects.
      void drained.then(() => resolve(r));
    };

    const onAbort = (): void => end({ status, end: "aborted" });
    o.signal.addEventListener("abort", onAbort, { once: true });

    const work = async (): Promise<void> => {
      try {
        while (queue.length > 0) {
          const batch = queue.splice(0, queue.length);
          queuedChars = 0;
          // The socket keeps flowing while the batch is handled (its events are journaled with
          // one durable write, replay-journal.ts): what arrives meanwhile is the next batch, so
          // under load one write covers more events. The queue is bounded, see onFrame.
          if (ending === undefined) res?.resume();
          let p: void | Promise<void>;
          try {
            p = o.onEvents(batch);
            if (p !== undefined) await p;
          } catch (err) {
            queue.length = 0;
            end({ status, end: "handler_error", error: err instanceof Error ? err : new Error(String(err)) });
            return;
          }
        }
      } finally {
        working = false;
        if (ending === undefined) {
          res?.resume();
          idleTimer?.refresh();
        }
      }
    };

    const decoder = createEventStreamDecoder({
      maxEventChars: o.maxEventChars ?? defaultMaxEventChars,
      onFrame: (f) => {
        if (ending !== undefined) return;
        queue.push(f);
        queuedChars += "data" in f ? f.data.length : 0;
        if (queuedChars > maxQueuedChars) res?.pause();
      },
      onComment: () => o.onComment?.(),
    });
    // Work starts once a whole chunk is decoded, so the events of one chunk form one batch.
    const deliver = (): void => {
      if (!working && queue.length > 0 && ending === undefined) {
        working = true;
        drained = work();
      }
    };
    const feed = (c: Buffer): void => {
      if (ending !== undefined) return;
      decoder.push(c);
      deliver();
    };

    const agentOpts = isHttps ? cpTlsOptions(o.ca) : {};
    const req = (isHttps ? https : http).request(url, { method: "GET", headers, agent: false, ...agentOpts });

    const requestTimer = setTimeout(() => end({ status, end: "request_timeout" }), o.requestTimeoutMs);
    req.on("socket", (s) => {
      if (s.connecting) {
        connectTimer = setTimeout(() => end({ status: 0, end: "request_timeout", error: new Error("TCP connect timeout") }), o.connectTimeoutMs ?? 10_000);
        s.once("connect", () => clearTimeout(connectTimer));
      }
    });
    req.on("error", (err) => end({ status, end: "network_error", error: err }));

    req.on("response", (r) => {
      res = r;
      status = r.statusCode ?? 0;
      if (status !== 200) {
        const retry = parseRetryAfter(r.headers["retry-after"]);
        const chunks: Buffer[] = [];
        let size = 0;
        const done = (): void => {
          const body = Buffer.concat(chunks).subarray(0, maxErrorBody).toString("utf8");
          end({ status, end: "http_status", ...(retry === undefined ? {} : { retryAfterSec: retry }), ...(body === "" ? {} : { body }) });
        };
        r.on("data", (c: Buffer) => {
          if (size < maxErrorBody) chunks.push(c);
          size += c.length;
          if (size >= maxErrorBody) done();
        });
        r.on("end", done);
        r.on("error", done);
        return;
      }
      const ctype = String(r.headers["content-type"] ?? "").toLowerCase();
      if (!ctype.startsWith("text/event-stream")) {
        end({ status, end: "bad_content_type", error: new Error(`unexpected Content-Type ${JSON.stringify(ctype)}`) });
        return;
      }
      clearTimeout(requestTimer);
      idleTimer = setTimeout(function onIdle() {
        // Time spent in our own handlers is not the server's silence.
        if (working) idleTimer?.refresh();
        else end({ status, end: "idle_timeout" });
      }, o.idleTimeoutMs);
      o.onOpen?.();
      if (ending !== undefined) return;

      const encoding = String(r.headers["content-encoding"] ?? "identity").toLowerCase();
      if (encoding === "gzip") {
        const gz = createGunzip();
        gunzip = gz;
        gz.on("data", feed);
        gz.on("error", (err) => end({ status, end: "protocol_error", error: err }));
      } else if (encoding !== "identity") {
        end({ status, end: "protocol_error", error: new Error(`unsupported Content-Encoding ${encoding}`) });
        return;
      }
      r.on("data", (c: Buffer) => {
        idleTimer?.refresh();
        if (gunzip !== undefined) gunzip.write(c);
        else feed(c);
      });
      r.on("end", () => {
        // An unterminated last event is discarded, as the W3C rules require at end of stream.
        const finish = (): void => {
          if (ending === undefined) {
            decoder.end();
            deliver();
          }
          end({ status, end: "ended" });
        };
        if (gunzip !== undefined) {
          gunzip.once("end", finish);
          gunzip.end();
        } else finish();
      });
      r.on("error", (err) => end({ status, end: "network_error", error: err }));
      r.on("close", () => {
        if (!r.complete) end({ status, end: "network_error", error: new Error("stream closed before its end") });
      });
    });
    req.end();
  });
}
