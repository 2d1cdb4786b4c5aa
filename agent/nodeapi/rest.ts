import type { IncomingMessage, OutgoingHttpHeaders } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { fromJson, toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";
import { AgentService, NodeStateService } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { parseIfMatchHeader } from "./state/if-match.js";
import type { Op, UnaryOp } from "./services.js";

// Plain REST routes over the same handlers (docs/node-api.md). Bodies are the
// response message JSON with proto field names and defaults emitted; errors are the Connect
// error body `{code, message}` with the HTTP status Connect itself uses for that code.

export const jsonWriteOptions = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;

const connectCodeName: Record<ErrorCode, string> = {
  cancelled: "canceled",
  unknown: "unknown",
  invalid_argument: "invalid_argument",
  deadline_exceeded: "deadline_exceeded",
  not_found: "not_found",
  already_exists: "already_exists",
  permission_denied: "permission_denied",
  resource_exhausted: "resource_exhausted",
  failed_precondition: "failed_precondition",
  aborted: "aborted",
  out_of_range: "out_of_range",
  unimplemented: "unimplemented",
  internal: "internal",
  unavailable: "unavailable",
  data_loss: "data_loss",
  unauthenticated: "unauthenticated",
};

export const httpStatusOf: Record<ErrorCode, number> = {
  cancelled: 499,
  unknown: 500,
  invalid_argument: 400,
  deadline_exceeded: 504,
  not_found: 404,
  already_exists: 409,
  permission_denied: 403,
  resource_exhausted: 429,
  failed_precondition: 400,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  data_loss: 500,
  unauthenticated: 401,
};

type Req = IncomingMessage | Http2ServerRequest;
/** The part of a Node response both HTTP versions (and connect-node's fallback) share. */
interface Res {
  readonly headersSent: boolean;
  writeHead(status: number, headers?: OutgoingHttpHeaders): unknown;
  setHeader(name: string, value: string): unknown;
  end(data?: string): unknown;
  on(event: "close", listener: () => void): unknown;
}

export interface Route {
  verb: "GET" | "PUT" | "DELETE" | "POST";
  pattern: RegExp;
  rpc: string;
  /** Request message JSON from path parameters, query and body. */
  request: (m: RegExpExecArray, query: URLSearchParams, body: Record<string, unknown>, req: Req) => Record<string, unknown>;
  status?: number;
  /** A status chosen from the answer (GET /v1/health: 503 while unhealthy, for probes that read only the status). */
  statusFrom?: (json: Record<string, unknown>) => number;
  /** Adds headers from the response JSON (ETag). */
  headers?: (json: Record<string, unknown>) => Record<string, string>;
  /** Secret values: no cache may keep the answer, errors included (docs/node-api.md). */
  noStore?: true;
  /** Answers a text body from the response JSON instead of the JSON (GET /metrics: Prometheus text). */
  text?: (json: Record<string, unknown>) => { contentType: string; body: string };
}

const key = (m: RegExpExecArray): string => decodeURIComponent(m[1] ?? "");
const flag = (q: URLSearchParams, name: string): boolean => ["1", "true", "yes"].includes((q.get(name) ?? "").toLowerCase());
const etag = (json: Record<string, unknown>): Record<string, string> => {
  const e = json.entry as { version?: unknown } | undefined;
  return typeof e?.version === "number" ? { etag: `"${e.version}"` } : {};
};
const none = (): Record<string, unknown> => ({});
const S = NodeStateService.typeName;
const A = AgentService.typeName;

function ifMatchFrom(req: Req, body: Record<string, unknown>): Record<string, unknown> {
  const header = req.headers["if-match"];
  const n = parseIfMatchHeader(Array.isArray(header) ? header[0] : header);
  if (n !== undefined) return { if_match: n };
  return body.if_match === undefined ? {} : { if_match: body.if_match };
}

const seg = "([^/]+)";
/** Every REST route and the RPC it calls (exported for the generated docs/node-api.md). */
export const routes: readonly Route[] = [
  { verb: "GET", pattern: /^\/v1\/state$/, rpc: `${S}/GetState`, request: none },
  { verb: "GET", pattern: /^\/v1\/state\/metadata$/, rpc: `${S}/GetMetadata`, request: none },
  { verb: "GET", pattern: new RegExp(`^/v1/state/metadata/${seg}$`), rpc: `${S}/GetMetadataValue`, request: (m) => ({ key: key(m) }) },
  { verb: "GET", pattern: /^\/v1\/state\/data$/, rpc: `${S}/ListData`, request: none },
  { verb: "GET", pattern: new RegExp(`^/v1/state/data/${seg}$`), rpc: `${S}/GetData`, request: (m) => ({ key: key(m) }) },
  { verb: "GET", pattern: /^\/v1\/state\/secrets$/, rpc: `${S}/ListSecrets`, request: none },
  { verb: "GET", pattern: new RegExp(`^/v1/state/secrets/${seg}$`), rpc: `${S}/GetSecret`, request: (m) => ({ key: key(m) }), noStore: true },
  { verb: "GET", pattern: /^\/v1\/state\/report$/, rpc: `${S}/ListReports`, request: none },
  { verb: "GET", pattern: new RegExp(`^/v1/state/report/${seg}$`), rpc: `${S}/GetReport`, request: (m) => ({ key: key(m) }), headers: etag },
  {
    verb: "PUT",
    pattern: new RegExp(`^/v1/state/report/${seg}$`),
    rpc: `${S}/PutReport`,
    request: (m, _q, body, req) => {
      if (!("payload" in body)) throw new PlexdError("invalid_argument", 'body must be {"content_type": ..., "payload": <JSON>}');
      return { content_type: "application/json", ...body, ...ifMatchFrom(req, body), key: key(m) };
    },
    headers: etag,
  },
  {
    verb: "DELETE",
    pattern: new RegExp(`^/v1/state/report/${seg}$`),
    rpc: `${S}/DeleteReport`,
    request: (m, _q, body, req) => ({ ...ifMatchFrom(req, body), key: key(m) }),
    status: 204,
  },
  { verb: "GET", pattern: /^\/v1\/agent\/status$/, rpc: `${A}/GetStatus`, request: (_m, q) => ({ include_peers: flag(q, "peers") }) },
  { verb: "GET", pattern: /^\/v1\/health$/, rpc: `${A}/GetHealth`, request: none, statusFrom: (json) => (json.status === "unhealthy" ? 503 : 200) },
  { verb: "PUT", pattern: /^\/v1\/agent\/log-level$/, rpc: `${A}/SetLogLevel`, request: (_m, _q, body) => body },
  { verb: "GET", pattern: /^\/v1\/agent\/peers$/, rpc: `${A}/ListPeers`, request: (_m, q) => ({ all: flag(q, "all") }) },
  { verb: "GET", pattern: /^\/v1\/agent\/policies$/, rpc: `${A}/ListPolicies`, request: (_m, q) => ({ rules: flag(q, "rules") }) },
  { verb: "GET", pattern: /^\/v1\/agent\/actions$/, rpc: `${A}/ListActions`, request: none },
  { verb: "GET", pattern: /^\/v1\/agent\/executions$/, rpc: `${A}/ListExecutions`, request: none },
  { verb: "GET", pattern: /^\/v1\/agent\/hooks$/, rpc: `${A}/ListHooks`, request: none },
  { verb: "POST", pattern: /^\/v1\/agent\/hooks:verify$/, rpc: `${A}/VerifyHooks`, request: none },
  { verb: "POST", pattern: /^\/v1\/agent\/hooks:reload$/, rpc: `${A}/ReloadHooks`, request: none },
  { verb: "GET", pattern: /^\/v1\/agent\/logs$/, rpc: `${A}/GetLogStatus`, request: none },
  { verb: "GET", pattern: /^\/v1\/agent\/audit$/, rpc: `${A}/GetAuditStatus`, request: none },
  { verb: "POST", pattern: /^\/v1\/agent\/config:reload$/, rpc: `${A}/ReloadConfig`, request: none },
  { verb: "POST", pattern: /^\/v1\/agent\/deregister$/, rpc: `${A}/Deregister`, request: (_m, _q, body) => body },
  { verb: "GET", pattern: /^\/metrics$/, rpc: `${A}/GetMetrics`, request: none, text: (json) => ({ contentType: String(json.content_type), body: String(json.text) }) },
  { verb: "GET", pattern: /^\/v1\/agent\/logs\/lines$/, rpc: `${A}/TailLogs`, request: (_m, q) => ({ after_seq: q.get("after") ?? "0", limit: Number(q.get("limit") ?? "0") }) },
];

const maxBody = 2 * 1024 * 1024; // a 1 MiB payload plus its JSON envelope

async function readBody(req: Req): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > maxBody) throw new PlexdError("resource_exhausted", "request body too large");
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PlexdError("invalid_argument", "request body is not valid JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new PlexdError("invalid_argument", "request body must be a JSON object");
  return parsed as Record<string, unknown>;
}

export function sendError(res: Res, err: unknown): void {
  const e = PlexdError.from(err);
  const body = JSON.stringify({ code: connectCodeName[e.code], message: e.message });
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(httpStatusOf[e.code], { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export type InvokeUnary = (op: UnaryOp, req: MessageShape<DescMessage>, httpReq: Req, signal: AbortSignal) => Promise<MessageShape<DescMessage>>;

/** The REST fallback handler for requests Connect did not route. */
export function restHandler(ops: Op[], invoke: InvokeUnary): (req: Req, res: Res) => void {
  const byPath = new Map(ops.filter((o): o is UnaryOp => o.kind === "unary").map((o) => [`${o.method.parent.typeName}/${o.method.name}`, o]));
  return (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const matching = routes.filter((r) => r.pattern.test(url.pathname));
      const route = matching.find((r) => r.verb === req.method);
      if (route === undefined) {
        if (matching.length > 0) {
          res.setHeader("allow", matching.map((r) => r.verb).join(", "));
          const body = JSON.stringify({ code: "unimplemented", message: `method ${req.method ?? ""} not allowed on ${url.pathname}` });
          res.writeHead(405, { "content-type": "application/json" });
          res.end(body);
          return;
        }
        throw new PlexdError("not_found", `no such route: ${req.method ?? ""} ${url.pathname}`);
      }
      const op = byPath.get(route.rpc);
      if (op === undefined) throw new PlexdError("unimplemented", `${route.rpc} is not served`);
      if (route.noStore === true) res.setHeader("cache-control", "no-store");
      const m = route.pattern.exec(url.pathname)!;
      const body = req.method === "GET" ? {} : await readBody(req);
      const input = op.method.input;
      let msg: MessageShape<DescMessage>;
      try {
        msg = fromJson(input, route.request(m, url.searchParams, body, req) as JsonValue);
      } catch (err) {
        if (err instanceof PlexdError) throw err;
        throw new PlexdError("invalid_argument", `invalid request: ${(err as Error).message}`);
      }
      const ac = new AbortController();
      res.on("close", () => ac.abort());
      const out = await invoke(op, msg, req, ac.signal);
      const json = toJson(op.method.output, out, jsonWriteOptions) as Record<string, unknown>;
      const headers: Record<string, string> = { ...route.headers?.(json) };
      if (route.status === 204) {
        res.writeHead(204, headers);
        res.end();
        return;
      }
      if (route.text !== undefined) {
        const t = route.text(json);
        res.writeHead(200, { ...headers, "content-type": t.contentType, "content-length": String(Buffer.byteLength(t.body)) });
        res.end(t.body);
        return;
      }
      const text = JSON.stringify(json);
      res.writeHead(route.statusFrom?.(json) ?? 200, { ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
      res.end(text);
    })().catch((err: unknown) => sendError(res, err));
  };
}
