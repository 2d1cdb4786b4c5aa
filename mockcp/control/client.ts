import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { gunzipSync, gzipSync } from "node:zlib";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";
import type { BadEventOptions } from "./badevents.js";
import type { LoggedRequest, RequestFilter } from "../state/requestlog.js";
import type { SigningKeysView } from "../state/keyring.js";
import type { DataEntry, Peer, Policy, Received } from "../state/store.js";

export type MockcpTarget = { socketPath: string } | { baseUrl: string; ca?: string | Buffer };

export interface HttpResult<T = unknown> {
  status: number;
  headers: IncomingHttpHeaders;
  /** Parsed JSON when the response is JSON, else the text. */
  body: T;
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

export interface NodeSummary {
  id: string;
  hostname: string;
  mesh_ip: string;
  public_key: string;
  registered_at: string;
  status: "registered" | "healthy" | "unreachable" | "offline" | "deregistered";
  deregistered_at: string | null;
  last_heartbeat_at: string | null;
  /** Open SSE streams of this node right now. */
  streams: number;
}

export interface NodeDetail extends NodeSummary {
  reported_metadata: Record<string, string>;
  capabilities: unknown;
  endpoint: { public_endpoint: string; nat_type: string; updated_at: string } | null;
  flags: { reconcile: boolean; rotate_keys: boolean };
  node_secret_key: string;
  identity_token: string;
  policies: Policy[];
  metadata: Record<string, string>;
  data: DataEntry[];
  heartbeat_count: number;
  drift_count: number;
  last_event_id: string | null;
}

export interface BadEventResult {
  kind: BadEventOptions["kind"];
  event_id: string | null;
  event_type: string;
  data: string | null;
  data_bytes: number;
  delivered: number;
}

export interface SigningKeyRotation {
  new_signing_public_key: string;
  valid_from: string;
  transition_period: string;
  signing_keys: SigningKeysView;
  events: { node_id: string; event_id: string }[];
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
 * Typed client for mockcp's test-control API (docs/mockcp.md), plus raw access to the CP
 * API for contract tests. Works over a unix socket (tests in another namespace) or a URL.
 */
export class MockcpClient {
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
      const req = this.#open(method, path, headers, opts.signal);
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
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: (isJson && text !== "" ? JSON.parse(text) : text) as T });
          } catch (err) {
            reject(PlexdError.from(err));
          }
        });
      });
      req.end(payload);
    });
  }

  #open(method: string, path: string, headers: Record<string, string>, signal: AbortSignal | undefined): http.ClientRequest {
    const base = { method, headers, ...(signal !== undefined ? { signal } : {}) };
    if ("socketPath" in this.#target) return http.request({ ...base, socketPath: this.#target.socketPath, path });
    const url = new URL(path, this.#target.baseUrl);
    if (url.protocol === "https:") return https.request(url, { ...base, ...(this.#target.ca !== undefined ? { ca: this.#target.ca } : {}) });
    return http.request(url, base);
  }

  /** Like request() but returns the body of a 2xx and throws PlexdError otherwise. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.request<T>(method, path, body === undefined ? {} : { body });
    if (r.status < 200 || r.status > 299) {
      const b = r.body as { error?: string; message?: string } | string;
      const msg = typeof b === "object" && b !== null ? `${b.error ?? ""}: ${b.message ?? ""}` : String(b);
      throw new PlexdError(codeOfStatus(r.status), `mockcp ${method} ${path} -> ${r.status} ${msg}`);
    }
    return r.body;
  }

  async ping(): Promise<void> {
    await this.call("GET", "/v1/ping");
  }

  status(): Promise<{ offline: boolean; nodes: number; active_nodes: number; signing_keys: SigningKeysView; signing_public_key: string }> {
    return this.call("GET", "/control/v1/status");
  }

  createToken(opts: { token?: string; ttlSeconds?: number; uses?: number } = {}): Promise<{ token: string; expires_at: string; uses: number }> {
    return this.call("POST", "/control/v1/tokens", {
      ...(opts.token !== undefined ? { token: opts.token } : {}),
      ...(opts.ttlSeconds !== undefined ? { ttl_seconds: opts.ttlSeconds } : {}),
      ...(opts.uses !== undefined ? { uses: opts.uses } : {}),
    });
  }

  async listTokens(): Promise<{ token: string; expires_at: string; uses_left: number; expired: boolean }[]> {
    return (await this.call<{ tokens: { token: string; expires_at: string; uses_left: number; expired: boolean }[] }>("GET", "/control/v1/tokens")).tokens;
  }

  async listNodes(): Promise<NodeSummary[]> {
    return (await this.call<{ nodes: NodeSummary[] }>("GET", "/control/v1/nodes")).nodes;
  }

  getNode(nodeId: string): Promise<NodeDetail> {
    return this.call("GET", `/control/v1/nodes/${enc(nodeId)}`);
  }

  /** The peer list (with PSKs) as `nodeId` would get it from /state. */
  async peers(nodeId: string): Promise<Peer[]> {
    return (await this.call<{ peers: Peer[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/peers`)).peers;
  }

  async requests(filter: RequestFilter = {}): Promise<LoggedRequest[]> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v !== undefined) q.set(k, String(v));
    const qs = q.toString();
    return (await this.call<{ requests: LoggedRequest[] }>("GET", `/control/v1/requests${qs === "" ? "" : `?${qs}`}`)).requests;
  }

  async clearRequests(): Promise<void> {
    await this.call("DELETE", "/control/v1/requests");
  }

  pushEvent(nodeId: string, ev: { event_type: string; payload?: Record<string, unknown>; event_id?: string }): Promise<{ event_id: string; event_type: string; delivered: number }> {
    return this.call("POST", `/control/v1/nodes/${enc(nodeId)}/events`, ev);
  }

  pushBadEvent(nodeId: string, opts: BadEventOptions): Promise<BadEventResult> {
    return this.call("POST", `/control/v1/nodes/${enc(nodeId)}/bad-events`, opts);
  }

  async events(nodeId: string): Promise<{ event_id: string; event_type: string; payload: Record<string, unknown>; issued_at: string }[]> {
    return (await this.call<{ events: { event_id: string; event_type: string; payload: Record<string, unknown>; issued_at: string }[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/events`)).events;
  }

  async dropStreams(nodeId: string, mode: "end" | "destroy" = "end"): Promise<number> {
    return (await this.call<{ dropped: number }>("POST", `/control/v1/nodes/${enc(nodeId)}/drop-streams`, { mode })).dropped;
  }

  async setFlags(nodeId: string, flags: { reconcile?: boolean; rotate_keys?: boolean }): Promise<{ reconcile: boolean; rotate_keys: boolean }> {
    return (await this.call<{ flags: { reconcile: boolean; rotate_keys: boolean } }>("POST", `/control/v1/nodes/${enc(nodeId)}/flags`, flags)).flags;
  }

  async heartbeats(nodeId: string): Promise<Received[]> {
    return (await this.call<{ heartbeats: Received[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/heartbeats`)).heartbeats;
  }

  async drift(nodeId: string): Promise<Received[]> {
    return (await this.call<{ drift: Received[] }>("GET", `/control/v1/nodes/${enc(nodeId)}/drift`)).drift;
  }

  capabilities(nodeId: string): Promise<{ capabilities: unknown; updated_at: string }> {
    return this.call("GET", `/control/v1/nodes/${enc(nodeId)}/capabilities`);
  }

  setPolicies(nodeId: string, policies: Policy[], opts: { push?: boolean } = {}): Promise<{ policies: Policy[]; event_id: string | null }> {
    return this.call("PUT", `/control/v1/nodes/${enc(nodeId)}/policies`, { policies, ...opts });
  }

  setNodeState(
    nodeId: string,
    st: { metadata?: Record<string, string>; data?: { key: string; content_type?: string; payload: unknown; version?: number }[]; push?: boolean },
  ): Promise<{ metadata: Record<string, string>; data: DataEntry[]; event_id: string | null }> {
    return this.call("PUT", `/control/v1/nodes/${enc(nodeId)}/node-state`, st);
  }

  signingKeys(): Promise<SigningKeysView & { active: string }> {
    return this.call("GET", "/control/v1/signing-keys");
  }

  rotateSigningKey(opts: { transition_period?: string; valid_from?: string; seed?: string; force?: boolean } = {}): Promise<SigningKeyRotation> {
    return this.call("POST", "/control/v1/signing-key/rotate", opts);
  }

  async setOffline(): Promise<void> {
    await this.call("POST", "/control/v1/offline");
  }

  async setOnline(): Promise<void> {
    await this.call("POST", "/control/v1/online");
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
      const req = this.#open("GET", `/v1/nodes/${enc(nodeId)}/events`, headers, undefined);
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
