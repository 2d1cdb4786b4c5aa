import http from "node:http";
import https from "node:https";
import { gzipSync, createGunzip } from "node:zlib";
import { PlexdError } from "../../proto/lib/errors.js";
import { isLoopbackHost } from "../../proto/lib/net.js";
import { version } from "../../proto/lib/version.js";
import { cpTlsOptions } from "./tls.js";

// Control-plane HTTP client (docs/architecture.md#the-control-plane-channel). node:http(s) rather than fetch:
// Node 20's fetch cannot take a private CA without the undici package, and we need
// exact control over timeouts, gzip and the response-size cap.

export interface CpClientOptions {
  baseUrl: string;
  /** PEM bundle added to the system roots (control_plane.ca_file). */
  ca?: string | Buffer;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
}

export interface CpRequest {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  body?: unknown;
  /** Identity token; omitted on /v1/register and /v1/ping (docs/architecture.md#the-control-plane-channel). */
  token?: string;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** A body already encoded by the caller (telemetry batches: gzip NDJSON or JSON), sent as is instead of `body`. */
  rawBody?: { data: Buffer; contentType: string; contentEncoding?: "gzip" };
}

export interface CpResponse<T = unknown> {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: T;
}

const maxResponseBytes = 10 * 1024 * 1024;
const gzipThreshold = 1024;

export interface CpClient {
  readonly baseUrl: URL;
  request<T = unknown>(req: CpRequest): Promise<CpResponse<T>>;
  /** Options for a long-lived request (SSE) sharing the TLS settings. */
  agentFor(): http.Agent;
}

export function createCpClient(opts: CpClientOptions): CpClient {
  const baseUrl = new URL(opts.baseUrl);
  const isHttps = baseUrl.protocol === "https:";
  if (!isHttps && !(baseUrl.protocol === "http:" && isLoopbackHost(baseUrl.hostname))) {
    throw new PlexdError("invalid_argument", `control plane URL must be https:// (http:// only for loopback): ${opts.baseUrl}`);
  }
  // Keep-alive: heartbeats and state pulls reuse one TLS session.
  const agent = isHttps
    ? new https.Agent({ keepAlive: true, ...cpTlsOptions(opts.ca) })
    : new http.Agent({ keepAlive: true });

  function request<T>(req: CpRequest): Promise<CpResponse<T>> {
    const url = new URL(req.path.replace(/^\//, ""), baseUrl.href.endsWith("/") ? baseUrl : new URL(baseUrl.href + "/"));
    const headers: Record<string, string> = {
      "User-Agent": `plexd/${version}`,
      Accept: "application/json",
      "Accept-Encoding": "gzip",
      ...req.headers,
    };
    if (req.token !== undefined) headers.Authorization = `Bearer ${req.token}`;
    let payload: Buffer | undefined;
    if (req.body !== undefined) {
      payload = Buffer.from(JSON.stringify(req.body));
      headers["Content-Type"] = "application/json";
      if (payload.length > gzipThreshold) {
        payload = gzipSync(payload);
        headers["Content-Encoding"] = "gzip";
      }
      headers["Content-Length"] = String(payload.length);
    } else if (req.rawBody !== undefined) {
      payload = req.rawBody.data;
      headers["Content-Type"] = req.rawBody.contentType;
      if (req.rawBody.contentEncoding !== undefined) headers["Content-Encoding"] = req.rawBody.contentEncoding;
      headers["Content-Length"] = String(payload.length);
    }
    const mod = isHttps ? https : http;
    return new Promise<CpResponse<T>>((resolve, reject) => {
      const r = mod.request(url, { method: req.method, headers, agent, timeout: opts.connectTimeoutMs });
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(overall);
        req.signal?.removeEventListener("abort", onAbort);
        r.destroy();
        reject(err instanceof PlexdError ? err : PlexdError.from(err));
      };
      const overall = setTimeout(
        () => fail(new PlexdError("deadline_exceeded", `${req.method} ${req.path}: no complete response within ${opts.requestTimeoutMs} ms`)),
        opts.requestTimeoutMs,
      );
      const onAbort = (): void => fail(new PlexdError("cancelled", "request aborted"));
      // Before anything can destroy the request: a destroyed request emits 'error' (socket hang
      // up), and one without a listener ends the process — seen when a call started with an
      // already-aborted signal during shutdown.
      r.on("error", (err) => fail(new PlexdError("unavailable", `${req.method} ${url.origin}${url.pathname}: ${err.message}`, { cause: err })));
      if (req.signal?.aborted) return onAbort();
      req.signal?.addEventListener("abort", onAbort, { once: true });
      // Until the socket connects, `timeout` is the connect timeout; then the overall timer rules.
      r.on("timeout", () => fail(new PlexdError("deadline_exceeded", `${req.method} ${req.path}: connect timeout`)));
      // A kept-alive socket is connected already: its connect events will never come, and a
      // listener per request would pile up on it.
      r.on("socket", (s) => (s.connecting ? s.once(isHttps ? "secureConnect" : "connect", () => r.setTimeout(0)) : r.setTimeout(0)));
      r.on("response", (res) => {
        const stream = res.headers["content-encoding"] === "gzip" ? res.pipe(createGunzip()) : res;
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on("data", (c: Buffer) => {
          size += c.length;
          if (size > maxResponseBytes) fail(new PlexdError("resource_exhausted", `${req.method} ${req.path}: response larger than 10 MiB`));
          else chunks.push(c);
        });
        stream.on("error", (err) => fail(err));
        stream.on("end", () => {
          if (settled) return;
          settled = true;
          clearTimeout(overall);
          req.signal?.removeEventListener("abort", onAbort);
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown = text;
          if (text.length > 0 && /json/.test(String(res.headers["content-type"] ?? "json"))) {
            try {
              body = JSON.parse(text);
            } catch {
              body = text;
            }
          } else if (text.length === 0) body = {};
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body as T });
        });
      });
      r.end(payload);
    });
  }

  return { baseUrl, request, agentFor: () => agent };
}

/** The error body of a non-2xx response, cut to what is safe to log (docs/architecture.md#the-control-plane-channel: 4096 bytes). */
export function describeError(res: CpResponse): string {
  const b = res.body as { error?: unknown; message?: unknown } | string;
  if (typeof b === "object" && b !== null) {
    const code = typeof b.error === "string" ? b.error : "";
    const msg = typeof b.message === "string" ? b.message : "";
    return `HTTP ${res.status}${code ? ` ${code}` : ""}${msg ? `: ${msg}` : ""}`.slice(0, 4096);
  }
  return `HTTP ${res.status}: ${String(b).slice(0, 4096)}`;
}
