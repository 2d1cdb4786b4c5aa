import { ApiError } from "../state/apierror.js";
import { decodeItems, obsKinds, type ObsKind } from "../state/observability.js";
import { noteTunnelHealth } from "../state/relay-nohandshake.js";
import { mediaType, requireMethod } from "./http.js";
import type { NodeRoute } from "./noderoute.js";

const contentTypes: Record<ObsKind, string> = { metrics: "application/json", logs: "application/x-ndjson", audit: "application/x-ndjson" };

const isKind = (s: string | undefined): s is ObsKind => (obsKinds as readonly (string | undefined)[]).includes(s);

/**
 * `POST /v1/nodes/{id}/metrics|logs|audit`: gzip or plain, checked against the
 * test failure mode (413/429), decoded (JSON array or NDJSON) and recorded; 202.
 */
export const observabilityRoute: NodeRoute = async ({ state }, ctx, node, rest) => {
  const kind = rest[0];
  if (rest.length !== 1 || !isKind(kind)) return null;
  requireMethod(ctx, "POST");
  const type = mediaType(ctx);
  if (type !== contentTypes[kind]) {
    await ctx.raw().catch(() => undefined);
    throw new ApiError(415, "unsupported_media_type", `${kind} needs Content-Type ${contentTypes[kind]}, got ${type === "" ? "none" : type}`);
  }
  const raw = await ctx.raw();
  state.observability.checkFailure(node.id, kind, raw.bytes.length);
  const body = await ctx.body();
  const items = decodeItems(kind, body);
  // Checked now; NDJSON batches are kept as text and decoded again only when viewed.
  const kept = kind === "metrics" ? items : { count: items.length, decode: () => decodeItems(kind, body) };
  state.observability.record(node.id, kind, { content_type: type, gzip: raw.gzip, wire_bytes: raw.wireBytes, decoded_bytes: raw.bytes.length }, kept);
  if (kind === "metrics") noteTunnelHealth(state, node.id, items);
  return { status: 202, body: {} };
};
