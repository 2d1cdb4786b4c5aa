import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { ApiError } from "../state/apierror.js";
import { sweepLiveness } from "../state/liveness.js";
import type { MockState } from "../state/store.js";
import { handleControl } from "../control/routes.js";
import { errorBody, parseBodyBytes, readRawBody, sendJson, splitPath, type RawBody, type RequestContext } from "./http.js";
import type { StreamHub } from "./streams.js";
import { serveArtifact } from "./artifacts.js";
import { callbackRoute } from "./callbacks.js";
import { executionRoute } from "./executions.js";
import type { NodeRoute } from "./noderoute.js";
import { observabilityRoute } from "./observability.js";
import { reportRoute } from "./reports.js";
import { secretRoute } from "./secrets.js";

/** Node-scoped feature routes (secrets … integrity), one module each. */
const nodeRoutes: NodeRoute[] = [secretRoute, reportRoute, executionRoute, observabilityRoute, callbackRoute];

export interface AppDeps {
  state: MockState;
  hub: StreamHub;
  log: Logger;
  /** Cap on request bodies, on the wire and after gunzip. */
  maxBodyBytes: number;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Headers worth keeping in the request log (never Authorization: it is a credential). */
const loggedHeaders = ["content-type", "content-encoding", "user-agent", "accept", "accept-encoding", "last-event-id"];

/** The one request handler every listener serves: the CP API under /v1 and the control API under /control/v1. */
export function createApp(deps: AppDeps): Handler {
  return (req, res) => {
    // dispatch answers every failure itself; this catches what escapes it (e.g. a request
    // target that is not a URL), so one bad request can never stop the server.
    dispatch(deps, req, res).catch((err: unknown) => {
      deps.log.error({ err, url: req.url }, "request handler failed");
      res.destroy();
    });
  };
}

async function dispatch(deps: AppDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = URL.parse(req.url ?? "/", "http://mockcp.invalid");
  if (url === null) {
    // The HTTP parser lets through request targets such as "//[" that no URL parser accepts.
    sendJson(req, res, 400, { error: "bad_request", message: "request target is not a URL" });
    return;
  }
  const method = (req.method ?? "GET").toUpperCase();
  let rawCache: Promise<RawBody> | undefined;
  let bodyCache: Promise<unknown> | undefined;
  let parsedBody: unknown = null;
  const isCp = url.pathname === "/v1" || url.pathname.startsWith("/v1/");
  let logged = false;
  const logRequest = (status: number): void => {
    if (!isCp || logged) return;
    logged = true;
    const headers: Record<string, string> = {};
    for (const h of loggedHeaders) {
      const v = req.headers[h];
      if (typeof v === "string") headers[h] = v;
    }
    const segs = url.pathname.split("/");
    const pathNode = segs[2] === "nodes" && segs[3] !== undefined ? safeDecode(segs[3]) : undefined;
    deps.state.requests.add({
      time: new Date(deps.state.now()).toISOString(),
      method,
      path: url.pathname,
      query: url.search,
      node_id: pathNode ?? deps.state.nodeIdOfToken(req.headers.authorization),
      status,
      headers,
      body: parsedBody,
    });
  };
  const ctx: RequestContext = {
    req,
    res,
    method,
    path: url.pathname,
    query: url.searchParams,
    segments: [],
    raw: () => {
      rawCache ??= readRawBody(req, deps.maxBodyBytes);
      return rawCache;
    },
    body: () => {
      // The control API takes JSON whatever the Content-Type, so `curl -d '{...}'` just works.
      bodyCache ??= ctx.raw().then((r) => {
        const b = parseBodyBytes(req, r.bytes, !isCp);
        parsedBody = b ?? null;
        return b;
      });
      return bodyCache;
    },
  };
  try {
    ctx.segments = splitPath(url.pathname);
    // Liveness is evaluated lazily on every request as well as on a timer, so a test
    // with an injected clock sees the effect of advancing it on its next request.
    sweepLiveness(deps.state);
    if (ctx.segments[0] === "control") {
      await handleControl(deps, ctx);
      return;
    }
    if (!isCp) throw new ApiError(404, "not_found", `no route for ${method} ${url.pathname}`);
    if (deps.state.offline) {
      // Offline mode answers 503 on the whole CP API; the control API keeps working so a
      // test can bring it back (docs/mockcp.md).
      throw new ApiError(503, "unavailable", "mockcp is offline (test control)");
    }
    const result = await handleCp(deps, ctx, logRequest);
    if (result === undefined) return; // streaming response, already logged
    // Read any unread body so it lands in the request log even when the endpoint ignores it.
    await ctx.body().catch(() => undefined);
    logRequest(result.status);
    sendJson(req, res, result.status, result.body);
  } catch (err) {
    const { status, body } = errorBody(err);
    if (status >= 500) deps.log.error({ err, path: url.pathname }, "request failed");
    else deps.log.debug({ path: url.pathname, status, error: body.error }, "request rejected");
    // A body the route refused before reading it (413/429 on uploads) still shows in the request log.
    if (isCp && (status === 413 || status === 429) && req.method === "POST") await ctx.body().catch(() => undefined);
    logRequest(status);
    // Drain what the client is still sending so the error reaches it instead of a reset.
    if (!req.complete) req.resume();
    const headers = err instanceof ApiError ? { ...(status === 503 ? { "retry-after": "1" } : {}), ...err.headers } : {};
    sendJson(req, res, status, body, headers);
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function methodNotAllowed(ctx: RequestContext): ApiError {
  return new ApiError(405, "method_not_allowed", `${ctx.method} is not allowed on ${ctx.path}`);
}

/** Routes of the control-plane API (docs/mockcp.md). Returns undefined when it has taken over the response (SSE). */
async function handleCp(
  deps: AppDeps,
  ctx: RequestContext,
  logRequest: (status: number) => void,
): Promise<{ status: number; body: unknown } | undefined> {
  const { state, hub } = deps;
  const s = ctx.segments;
  const auth = ctx.req.headers.authorization;
  const want = (m: string): void => {
    if (ctx.method !== m) throw methodNotAllowed(ctx);
  };

  if (s.length === 2 && s[1] === "ping") {
    want("GET");
    return { status: 200, body: {} };
  }
  if (s.length === 2 && s[1] === "register") {
    want("POST");
    // Register is authenticated by the body token only; any Authorization header is ignored.
    return { status: 201, body: state.register(await ctx.body()) };
  }
  if (s.length === 3 && s[1] === "keys" && s[2] === "rotate") {
    want("POST");
    const caller = state.authCaller(auth);
    return { status: 200, body: state.rotateKeys(caller, await ctx.body()) };
  }
  if (s[1] === "nodes" && s.length >= 4) {
    const nodeId = s[2] ?? "";
    const node = state.authNode(nodeId, auth);
    const sub = s.slice(3).join("/");
    switch (sub) {
      case "events": {
        want("GET");
        const last = ctx.req.headers["last-event-id"];
        logRequest(200);
        hub.open(node.id, ctx.res, typeof last === "string" && last !== "" ? last : undefined);
        return undefined;
      }
      case "heartbeat":
        want("POST");
        return { status: 200, body: state.heartbeat(node, await ctx.body()) };
      case "deregister":
        want("POST");
        state.deregister(node);
        hub.drop(node.id, "end");
        return { status: 200, body: {} };
      case "state":
        want("GET");
        return { status: 200, body: state.state(node) };
      case "endpoint":
        want("PUT");
        return { status: 200, body: state.putEndpoint(node, await ctx.body()) };
      case "capabilities":
        want("PUT");
        state.putCapabilities(node, await ctx.body());
        return { status: 200, body: {} };
      case "drift":
        want("POST");
        state.postDrift(node, await ctx.body());
        return { status: 200, body: {} };
      default:
        for (const route of nodeRoutes) {
          const r = await route(deps, ctx, node, s.slice(3));
          if (r !== null) return r;
        }
    }
  }
  if (s[1] === "artifacts") {
    serveArtifact(deps, ctx, logRequest);
    return undefined;
  }
  throw new ApiError(404, "not_found", `no route for ${ctx.method} ${ctx.path}`);
}
