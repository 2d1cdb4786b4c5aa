import type { NodeRecord } from "../state/store.js";
import type { AppDeps } from "./app.js";
import type { RequestContext } from "./http.js";

export interface CpResult {
  status: number;
  body: unknown;
}

/**
 * A node-scoped CP route. `rest` holds the decoded path segments after
 * `/v1/nodes/{node_id}/`; the node has already passed the 404-then-401 checks.
 * Returns null when the path is not this route's.
 */
export type NodeRoute = (deps: AppDeps, ctx: RequestContext, node: NodeRecord, rest: string[]) => Promise<CpResult | null>;
