import { z } from "zod";
import { PlexdError } from "../../proto/lib/errors.js";
import { peerListSchema, type Peer } from "../mesh/peer.js";
import type { Change, DesiredState } from "../state/desired.js";
import { foldBridgeBlocks } from "../bridge/desired.js";
import type { CpClient } from "./http.js";
import { describeError } from "./http.js";

// GET /v1/nodes/{id}/state (docs/mockcp.md#control-plane-api-what-agents-use): the full desired state. Every
// list fully replaces the local copy; the same store the event handlers write.

const policyRule = z.object({
  src: z.string(),
  dst: z.string(),
  port: z.number().int().default(0),
  protocol: z.string().nullish().transform((p) => p ?? ""),
  action: z.string(),
});
const list = <T extends z.ZodType>(item: T) => z.array(item).nullish().transform((v) => v ?? []);

export const stateDocument = z.object({
  peers: peerListSchema,
  policies: list(z.object({ id: z.string(), rules: list(policyRule) })),
  signing_keys: z.object({ current: z.string(), previous: z.string().nullish(), transition_expires: z.string().nullish() }).nullish(),
  metadata: z.record(z.string(), z.string()).nullish().transform((m) => m ?? {}),
  data: list(z.object({ key: z.string(), content_type: z.string(), payload: z.unknown(), version: z.number().int(), updated_at: z.string() })),
  secret_refs: list(z.object({ key: z.string(), version: z.number().int() })),
  // Bridge blocks (docs/bridge.md): each service parses its own; absent = leave the feature alone.
  bridge_config: z.record(z.string(), z.unknown()).nullish(),
  relay_config: z.record(z.string(), z.unknown()).nullish(),
  user_access_config: z.record(z.string(), z.unknown()).nullish(),
  ingress_config: z.record(z.string(), z.unknown()).nullish(),
  site_to_site_config: z.record(z.string(), z.unknown()).nullish(),
});
export type StateDocument = z.infer<typeof stateDocument>;

export class IdentityRejectedError extends PlexdError {
  readonly status: number;
  constructor(status: number, message: string) {
    super("unauthenticated", message);
    this.status = status;
  }
}

export async function fetchState(cp: CpClient, nodeId: string, token: string, signal: AbortSignal): Promise<StateDocument> {
  const res = await cp.request({ method: "GET", path: `/v1/nodes/${encodeURIComponent(nodeId)}/state`, token, signal });
  if (res.status === 401 || res.status === 404) throw new IdentityRejectedError(res.status, `state: ${describeError(res)}`);
  if (res.status !== 200) throw new PlexdError("unavailable", `state: ${describeError(res)}`);
  const parsed = stateDocument.safeParse(res.body);
  if (!parsed.success) throw new PlexdError("internal", `state document invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return parsed.data;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Writes a state document into the desired state; returns the slices that changed. */
export function applyStateDocument(s: DesiredState, doc: StateDocument): Change[] {
  const changed: Change[] = [];
  // Peer by peer: an unchanged peer keeps its object, so whatever the reconcilers derived
  // from it stays valid, and only the ids that really changed are reported. Known peers keep
  // their place and new ones follow in the document's order: the store's order is the order of
  // arrival, which decides who holds a key or prefix when two peers claim it after a restart.
  const incoming = new Map(doc.peers.map((p) => [p.id, p]));
  const peers: DesiredState["peers"] = {};
  const touched: string[] = [];
  const put = (p: Peer): void => {
    const old = s.peers[p.id];
    if (old !== undefined && same(old, p)) peers[p.id] = old;
    else {
      peers[p.id] = p;
      touched.push(p.id);
    }
  };
  for (const id of Object.keys(s.peers)) {
    const p = incoming.get(id);
    if (p === undefined) touched.push(id);
    else put(p);
  }
  for (const p of incoming.values()) if (!(p.id in peers)) put(p);
  if (touched.length > 0) {
    s.peers = peers;
    changed.push({ peers: touched });
  }
  if (!same(s.policies, doc.policies)) {
    s.policies = doc.policies;
    changed.push("policies");
  }
  if (!same(s.metadata, doc.metadata)) {
    s.metadata = doc.metadata;
    changed.push("metadata");
  }
  const data = doc.data.filter((d) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(d.key));
  if (!same(s.data, data)) {
    s.data = data;
    changed.push("data");
  }
  if (!same(s.secret_refs, doc.secret_refs)) {
    s.secret_refs = doc.secret_refs;
    changed.push("secret_refs");
  }
  const bridge = { ...(s.bridge ?? {}) };
  if (foldBridgeBlocks(bridge, doc)) {
    s.bridge = bridge;
    changed.push("bridge");
  }
  return changed;
}
