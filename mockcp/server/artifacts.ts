import { ApiError } from "../state/apierror.js";
import type { AppDeps } from "./app.js";
import { requireMethod, type RequestContext } from "./http.js";

/**
 * `GET /v1/artifacts/plexd/{version}/{os}/{arch}`: the uploaded bytes as
 * `application/octet-stream`, or 404. Writes the response itself (it is not JSON).
 */
export function serveArtifact({ state }: AppDeps, ctx: RequestContext, logRequest: (status: number) => void): void {
  const s = ctx.segments;
  if (s.length !== 6 || s[2] !== "plexd") throw new ApiError(404, "not_found", `no route for ${ctx.method} ${ctx.path}`);
  requireMethod(ctx, "GET");
  state.authCaller(ctx.req.headers.authorization);
  const bytes = state.artifacts.download(s[3] ?? "", s[4] ?? "", s[5] ?? "");
  logRequest(200);
  ctx.res.writeHead(200, { "content-type": "application/octet-stream", "content-length": bytes.length });
  ctx.res.end(bytes);
}
