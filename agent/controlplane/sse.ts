import http from "node:http";
import https from "node:https";
import { createGunzip, type Gunzip } from "node:zlib";
import { createParser } from "eventsource-parser";
import { parseRetryAfter } from "./backoff.js";
import { isLoopbackHost } from "../../proto/lib/net.js";
import { cpTlsOptions } from "./tls.js";

// One connection of the event stream (spec/control-plane.md 4.1, 2.6). Framing is
// eventsource-parser's (full W3C rules: LF/CRLF/CR, multi-line data, comments, BOM); this module
// only owns the HTTP side, the timeouts and in-order delivery. node:http rather than fetch:
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
  /** Unusable stream: an event larger than the buffer cap, broken gzip, a disallowed URL. */
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
   * Called for every event that has data, in stream order. If it returns a promise, no further
   * event is delivered (and the socket is paused) until it settles.
   */
  onEvent: (data: string, id: string | undefined) => void | Promise<void>;
  onComment?: () => void;
  /** Cap on one buffered event in characters; larger ends the stream as protocol_error. */
  maxEventChars?: number;
}

export const defaultMaxEventChars = 2 * 1024 * 1024;
const maxErrorBody = 4096;

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
    const queue: Array<{ data: string; id: string | undefined }> = [];
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
          const ev = queue.shift() as { data: string; id: string | undefined };
          let p: void | Promise<void>;
          try {
            p = o.onEvent(ev.data, ev.id);
            if (p !== undefined) {
              res?.pause();
              await p;
            }
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
      ...(o.maxEventChars === undefined ? {} : { maxEventChars: o.maxEventChars }),
      onEvent: (data, id) => {
        if (ending !== undefined) return;
        queue.push({ data, id });
        if (!working) {
          working = true;
          drained = work();
        }
      },
      onComment: () => o.onComment?.(),
      onOverflow: (err) => end({ status, end: "protocol_error", error: err }),
    });
    const feed = (c: Buffer): void => {
      if (ending === undefined) decoder.push(c);
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
          if (ending === undefined) decoder.end();
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

export interface EventStreamDecoder {
  /** Feeds raw body bytes; chunk boundaries may fall anywhere, inside UTF-8 sequences too. */
  push(chunk: Uint8Array): void;
  /**
   * End of body. A final CR is only known to be a line end once nothing follows it, which the
   * parser cannot see; this completes it so an event ending in CR CR is not lost at EOF.
   */
  end(): void;
  /** Set once an event exceeded the buffer cap; later pushes are ignored. */
  readonly failed: Error | undefined;
}

/**
 * Bytes → SSE events: UTF-8 decoding plus eventsource-parser. Kept apart from the HTTP code so
 * the fuzz suite drives exactly what the client runs.
 */
export function createEventStreamDecoder(h: {
  onEvent: (data: string, id: string | undefined) => void;
  onComment?: () => void;
  onOverflow: (err: Error) => void;
  maxEventChars?: number;
}): EventStreamDecoder {
  let failed: Error | undefined;
  // TextDecoder (not StringDecoder) because it drops a leading BOM, as the W3C decode step
  // requires; eventsource-parser's own BOM check looks for the undecoded bytes EF BB BF.
  const text = new TextDecoder("utf-8");
  const parser = createParser({
    maxBufferSize: h.maxEventChars ?? defaultMaxEventChars,
    onEvent: (m) => h.onEvent(m.data, m.id),
    onComment: () => h.onComment?.(),
    onError: (e) => {
      // Unknown fields and a bad `retry:` are ignored by the W3C rules; only the buffer cap
      // makes the stream unusable.
      if (e.type === "max-buffer-size-exceeded") {
        failed = e;
        h.onOverflow(e);
      }
    },
  });
  let lastCharCR = false;
  let ended = false;
  return {
    push(chunk) {
      if (failed !== undefined || ended) return;
      const s = text.decode(chunk, { stream: true });
      if (s.length > 0) {
        lastCharCR = s.charCodeAt(s.length - 1) === 13;
        parser.feed(s);
      }
    },
    end() {
      if (ended) return;
      ended = true;
      // Bytes of an unfinished UTF-8 sequence can only belong to an unterminated line, which
      // the W3C rules discard at EOF anyway; so the decoder's tail is dropped.
      text.decode();
      // CR + LF is one line end, so this adds no extra blank line.
      if (failed === undefined && lastCharCR) parser.feed("\n");
    },
    get failed() {
      return failed;
    },
  };
}
