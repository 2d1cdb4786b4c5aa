import type { AppDeps } from "../server/app.js";
import { sendJson, type RequestContext } from "../server/http.js";

/** Route parameters by name (`:id` → `id`), decoded. */
export type Params = Record<string, string>;

/** A control route: `pattern` is `METHOD seg/:param/...` relative to /control/v1. */
export interface ControlRoute {
  pattern: string;
  handle(deps: AppDeps, ctx: RequestContext, p: Params): void | Promise<void>;
}

/** Finds the route for the request and its parameters. */
export function matchRoute(routes: readonly ControlRoute[], ctx: RequestContext): { route: ControlRoute; params: Params } | undefined {
  const segs = ctx.segments.slice(2);
  for (const route of routes) {
    const [method, path = ""] = route.pattern.split(" ");
    if (method !== ctx.method) continue;
    const parts = path.split("/");
    if (parts.length !== segs.length) continue;
    const params: Params = {};
    let ok = true;
    for (const [i, part] of parts.entries()) {
      const seg = segs[i] ?? "";
      if (part.startsWith(":")) params[part.slice(1)] = seg;
      else if (part !== seg) ok = false;
    }
    if (ok) return { route, params };
  }
  return undefined;
}

export const reply = (ctx: RequestContext, status: number, body: unknown): void => sendJson(ctx.req, ctx.res, status, body);

/** `push` from the query string (`?push=false`), for bodiless DELETE routes. */
export const queryPush = (ctx: RequestContext): boolean => ctx.query.get("push") !== "false";
