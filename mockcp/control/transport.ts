import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { gunzipSync, gzipSync } from "node:zlib";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";

export type MockcpTarget = { socketPath: string } | { baseUrl: string; ca?: string | Buffer };

export interface HttpResult<T = unknown> {
  status: number;
  headers: IncomingHttpHeaders;
  /** Parsed JSON when the response is JSON, else the text. */
  body: T;
  /** The response body as bytes (after gunzip), e.g. for artifact downloads. */
  bytes: Buffer;
}

export interface RequestOptions {
  /** JSON-encoded unless `rawBody` is given. */
  body?: unknown;
  rawBody?: string | Buffer;
  headers?: Record<string, string>;
  /** Gzip the body and send `Content-Encoding: gzip`. */
  gzip?: boolean;
  /** Sends `Authorization: Bearer <token>`. */
  token?: string;
  signal?: AbortSignal;
}


/** One SSE stream opened with `openEvents`. */
export interface EventStream {
  status: number;
  /** Next event; rejects with `deadline_exceeded` after `timeoutMs`, `unavailable` once the stream ended. */
  next(timeoutMs?: number): Promise<EventSourceMessage>;
  /** Comment lines (e.g. `keepalive`) seen so far. */
  readonly comments: string[];
  readonly ended: boolean;
  close(): void;
}

function codeOfStatus(status: number): ErrorCode {
  if (status === 400 || status === 413) return "invalid_argument";
  if (status === 401) return "unauthenticated";
  if (status === 403) return "permission_denied";
  if (status === 404) return "not_found";
  if (status === 409) return "already_exists";
  if (status === 429) return "resource_exhausted";
  if (status >= 500) return "unavailable";
  return "unknown";
}

/**
 * HTTP plumbing of MockcpClient: raw requests to the CP API and the control API, over a
 * unix socket or a URL, plus SSE streams and polling. The typed methods live in subclasses.
 */
export class MockcpTransport {
  readonly #target: MockcpTarget;

  constructor(target: MockcpTarget) {
    this.#target = target;
  }

  /** Any request; never throws on HTTP status (only on transport errors). */
  request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResult<T>> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { accept: "application/json", "accept-encoding": "gzip", ...opts.headers };
      let payload: Buffer | undefined;
      if (opts.rawBody !== undefined) payload = Buffer.from(opts.rawBody);
      else if (opts.body !== undefined) {
        payload = Buffer.from(JSON.stringify(opts.body));
        headers["content-type"] ??= "application/json";
      }
      if (payload !== undefined && opts.gzip === true) {
        payload = gzipSync(payload);
        headers["content-encoding"] = "gzip";
      }
      if (payload !== undefined) headers["content-length"] = String(payload.length);
      if (opts.token !== undefined) headers["authorization"] = `Bearer ${opts.token}`;
      const req = this.openRequest(method, path, headers, opts.signal);
      req.on("error", (err) => reject(PlexdError.from(err)));
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (err) => reject(PlexdError.from(err)));
        res.on("end", () => {
          try {
            let raw = Buffer.concat(chunks);
            if (res.headers["content-encoding"] === "gzip") raw = gunzipSync(raw);
            const text = raw.toString("utf8");
            const isJson = (res.headers["content-type"] ?? "").startsWith("application/json");
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: (isJson && text !== "" ? JSON.parse(text) : text) as T, bytes: raw });
          } catch (err) {
            reject(PlexdError.from(err));
          }
        });
      });
      req.end(payload);
    });
  }

  /** Opens a request to the target (unix socket or URL); used by request() and openEvents(). */
  protected openRequest(method: string, path: string, headers: Record<string, string>, signal: AbortSignal | undefined): http.ClientRequest {
    const base = { method, headers, ...(signal !== undefined ? { signal } : {}) };
    if ("socketPath" in this.#target) return http.request({ ...base, socketPath: this.#target.socketPath, path });
    const url = new URL(path, this.#target.baseUrl);
    if (url.protocol === "https:") return https.request(url, { ...base, ...(this.#target.ca !== undefined ? { ca: this.#target.ca } : {}) });
    return http.request(url, base);
  }

  /** Like request() but returns the body of a 2xx and throws PlexdError otherwise. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.check(await this.request<T>(method, path, body === undefined ? {} : { body }), method, path);
  }

  /** The body of a 2xx result; throws PlexdError (code from the status) otherwise. */
  protected check<T>(r: HttpResult<T>, method: string, path: string): T {
    if (r.status < 200 || r.status > 299) {
      const b = r.body as { error?: string; message?: string } | string;
      const msg = typeof b === "object" && b !== null ? `${b.error ?? ""}: ${b.message ?? ""}` : String(b);
      throw new PlexdError(codeOfStatus(r.status), `mockcp ${method} ${path} -> ${r.status} ${msg}`);
    }
    return r.body;
  }

  /** Polls `probe` until it returns something other than undefined/false. */
  async waitFor<T>(probe: () => Promise<T | undefined | false>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    for (;;) {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new PlexdError("deadline_exceeded", `timed out waiting for ${opts.what ?? "condition"}`);
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
    }
  }

  /** Opens a node's SSE stream as the agent would (for tests of mockcp itself and of harnesses). */
  openEvents(nodeId: string, identityToken: string, opts: { lastEventId?: string } = {}): Promise<EventStream> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { accept: "text/event-stream", "cache-control": "no-cache", authorization: `Bearer ${identityToken}` };
      if (opts.lastEventId !== undefined) headers["last-event-id"] = opts.lastEventId;
      const req = this.openRequest("GET", `/v1/nodes/${enc(nodeId)}/events`, headers, undefined);
      req.on("error", (err) => reject(PlexdError.from(err)));
      req.on("response", (res: IncomingMessage) => resolve(eventStream(req, res)));
      req.end();
    });
  }
}

function eventStream(req: http.ClientRequest, res: IncomingMessage): EventStream {
  const queue: EventSourceMessage[] = [];
  const waiters: (() => void)[] = [];
  const comments: string[] = [];
  let ended = false;
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  const parser = createParser({
    onEvent: (m) => {
      queue.push(m);
      wake();
    },
    onComment: (c) => {
      comments.push(c.trim());
      wake();
    },
  });
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => parser.feed(chunk));
  const finish = (): void => {
    ended = true;
    wake();
  };
  res.on("end", finish);
  res.on("close", finish);
  res.on("error", finish);
  req.on("error", finish);
  return {
    status: res.statusCode ?? 0,
    comments,
    get ended() {
      return ended;
    },
    async next(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = queue.shift();
        if (m !== undefined) return m;
        if (ended) throw new PlexdError("unavailable", "event stream ended");
        const left = deadline - Date.now();
        if (left <= 0) throw new PlexdError("deadline_exceeded", "no event within timeout");
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    close() {
      req.destroy();
      finish();
    },
  };
}

const enc = encodeURIComponent;
