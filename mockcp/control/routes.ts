import { z } from "zod";
import { ApiError } from "../state/apierror.js";
import { parseTimestamp, parseWireDuration } from "../../proto/lib/duration.js";
import { SigningKey } from "../state/signer.js";
import { parseBody, type DataEntry, type NodeRecord } from "../state/store.js";
import { timestamp } from "../state/validate.js";
import type { AppDeps } from "../server/app.js";
import { checkKeyName, sendJson, type RequestContext } from "../server/http.js";
import { artifactControlRoutes } from "./artifacts.js";
import { badEventKinds, buildBadEvent, envelopeFields } from "./badevents.js";
import { executionControlRoutes } from "./executions.js";
import { matchRoute, type ControlRoute } from "./match.js";
import { meshControlRoutes } from "./mesh.js";
import { ingressControlRoutes } from "./ingress.js";
import { bridgeControlRoutes } from "./bridge.js";
import { siteToSiteControlRoutes } from "./site-to-site.js";
import { observabilityControlRoutes } from "./observability.js";
import { relayControlRoutes } from "./relay.js";
import { reportControlRoutes } from "./reports.js";
import { secretControlRoutes } from "./secrets.js";
import { sessionControlRoutes } from "./sessions.js";
import { userAccessControlRoutes } from "./user-access.js";

/** Control routes of the later endpoints, one module per area. */
const featureRoutes: ControlRoute[] = [
  ...secretControlRoutes,
  ...reportControlRoutes,
  ...executionControlRoutes,
  ...observabilityControlRoutes,
  ...artifactControlRoutes,
  ...meshControlRoutes,
  ...sessionControlRoutes,
  ...ingressControlRoutes,
  ...relayControlRoutes,
  ...bridgeControlRoutes,
  ...userAccessControlRoutes,
  ...siteToSiteControlRoutes,
];

const tokenBody = z.object({
  token: z.string().optional(),
  ttl_seconds: z.number().optional(),
  uses: z.number().int().min(1).optional(),
});

const eventBody = z.object({
  event_type: z.string().min(1),
  payload: z.record(z.string(), z.unknown()).default({}),
  event_id: z.string().min(1).max(128).optional(),
});

const badEventBody = z.object({
  kind: z.enum(badEventKinds),
  event_type: z.string().min(1).optional(),
  payload: z.record(z.string(), z.unknown()).optional(),
  field: z.enum(envelopeFields).optional(),
  offset_seconds: z.number().positive().optional(),
  size: z.number().int().positive().optional(),
});

const replayFramesBody = z.object({ seqs: z.array(z.number().int().positive()).max(5000).optional() });

const dropBody = z.object({ mode: z.enum(["end", "destroy"]).default("end") });

const flagsBody = z.object({ reconcile: z.boolean().optional(), rotate_keys: z.boolean().optional() });

const rotateSigningBody = z.object({
  transition_period: z.string().default("24h"),
  valid_from: timestamp().optional(),
  seed: z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex characters").optional(),
  force: z.boolean().default(false),
});

const policiesBody = z.object({
  policies: z.array(z.object({ id: z.string().min(1), rules: z.array(z.record(z.string(), z.unknown())) })),
  push: z.boolean().default(true),
});

const nodeStateBody = z.object({
  metadata: z.record(z.string(), z.string()).optional(),
  data: z
    .array(
      z.object({
        key: z.string(),
        content_type: z.string().default("application/json"),
        payload: z.unknown(),
        version: z.number().int().min(1).optional(),
        updated_at: z.string().optional(),
      }),
    )
    .optional(),
  push: z.boolean().default(true),
});

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** Test-control API under /control/v1 (docs/mockcp.md). Unauthenticated: mockcp is a test tool. */
export async function handleControl(deps: AppDeps, ctx: RequestContext): Promise<void> {
  const { state, hub } = deps;
  const s = ctx.segments;
  if (s[1] !== "v1") throw notFound(ctx);
  const route = `${ctx.method} ${s.slice(2).map((x, i) => (s[2] === "nodes" && i === 1 ? ":id" : x)).join("/")}`;
  const reply = (status: number, body: unknown): void => sendJson(ctx.req, ctx.res, status, body);
  const node = (): NodeRecord => state.nodeOr404(s[3] ?? "");
  const summary = (n: NodeRecord): Record<string, unknown> => ({
    id: n.id,
    hostname: n.hostname,
    mesh_ip: n.meshIp,
    public_key: n.publicKey,
    registered_at: iso(n.registeredAt),
    status: state.statusOf(n),
    deregistered_at: iso(n.deregisteredAt),
    last_heartbeat_at: iso(n.lastHeartbeatAt),
    streams: hub.count(n.id),
  });

  switch (route) {
    case "GET status":
      return reply(200, {
        offline: state.offline,
        nodes: state.nodes.size,
        active_nodes: state.activeNodes().length,
        signing_keys: state.keys.view(state.now()),
        signing_public_key: state.keys.signer(state.now()).publicKey,
      });
    case "POST tokens": {
      const b = parseBody(tokenBody, (await ctx.body()) ?? {});
      return reply(201, state.createToken({ token: b.token, ttlSeconds: b.ttl_seconds, uses: b.uses }));
    }
    case "GET tokens":
      return reply(200, { tokens: state.listTokens() });
    case "GET nodes":
      return reply(200, { nodes: [...state.nodes.values()].map(summary) });
    case "GET nodes/:id": {
      const n = node();
      return reply(200, {
        ...summary(n),
        reported_metadata: n.reportedMetadata,
        capabilities: n.capabilities,
        endpoint: n.endpoint ?? null,
        flags: n.flags,
        node_secret_key: n.nsk,
        identity_token: n.identityToken,
        policies: n.policies,
        metadata: n.metadata,
        data: n.data,
        heartbeat_count: n.heartbeats.length,
        drift_count: n.drift.length,
        offline_since: iso(n.offlineSince),
        secret_refs: state.secrets.refs(n.id),
        last_event_id: n.events.last()?.event_id ?? null,
      });
    }
    case "GET nodes/:id/peers":
      return reply(200, { peers: state.peersOf(node().id) });
    case "GET nodes/:id/heartbeats":
      return reply(200, { heartbeats: node().heartbeats });
    case "GET nodes/:id/drift":
      return reply(200, { drift: node().drift });
    case "GET nodes/:id/capabilities": {
      const n = node();
      return reply(200, { capabilities: n.capabilities, updated_at: iso(n.capabilitiesUpdatedAt) });
    }
    case "GET nodes/:id/events":
      return reply(200, {
        events: node().events.all().map((e) => ({ event_id: e.event_id, event_type: e.event_type, payload: e.payload, issued_at: iso(e.issuedAt) })),
      });
    case "POST nodes/:id/events": {
      const n = node();
      const b = parseBody(eventBody, await ctx.body());
      const ev = state.publish(n.id, b.event_type, b.payload, b.event_id);
      return reply(201, { event_id: ev.event_id, event_type: ev.event_type, delivered: hub.count(n.id) });
    }
    case "POST nodes/:id/bad-events": {
      const n = node();
      const b = parseBody(badEventBody, await ctx.body());
      const bad = buildBadEvent(state, hub.lastSent.get(n.id), b);
      const delivered = hub.sendRaw(n.id, bad.id, bad.event_type, bad.data);
      return reply(201, {
        kind: bad.kind,
        event_id: bad.id ?? null,
        event_type: bad.event_type,
        // An oversize line is not worth echoing back.
        data: bad.kind === "oversize" ? null : bad.data,
        data_bytes: Buffer.byteLength(bad.data),
        delivered,
      });
    }
    case "GET nodes/:id/captured-frames":
      return reply(200, {
        frames: hub.captured(node().id).map((f) => ({ seq: f.seq, event_id: f.event_id ?? null, event_type: f.event_type ?? null, bytes: f.bytes, kept: f.frame !== "" })),
      });
    case "POST nodes/:id/captured-frames/replay": {
      const n = node();
      const b = parseBody(replayFramesBody, (await ctx.body()) ?? {});
      return reply(200, hub.replayCaptured(n.id, b.seqs));
    }
    case "POST nodes/:id/drop-streams": {
      const n = node();
      const b = parseBody(dropBody, (await ctx.body()) ?? {});
      return reply(200, { dropped: hub.drop(n.id, b.mode) });
    }
    case "POST nodes/:id/flags": {
      const n = node();
      const b = parseBody(flagsBody, (await ctx.body()) ?? {});
      if (b.reconcile !== undefined) n.flags.reconcile = b.reconcile;
      if (b.rotate_keys !== undefined) n.flags.rotate_keys = b.rotate_keys;
      return reply(200, { flags: n.flags });
    }
    case "PUT nodes/:id/policies": {
      const n = node();
      const b = parseBody(policiesBody, await ctx.body());
      n.policies = b.policies;
      const ev = b.push ? state.publish(n.id, "policy_updated", { policies: n.policies }) : undefined;
      return reply(200, { policies: n.policies, event_id: ev?.event_id ?? null });
    }
    case "PUT nodes/:id/node-state": {
      const n = node();
      const b = parseBody(nodeStateBody, await ctx.body());
      const payload: Record<string, unknown> = {};
      if (b.metadata !== undefined) {
        n.metadata = b.metadata;
        payload["metadata"] = n.metadata;
      }
      if (b.data !== undefined) {
        const nowIso = new Date(state.now()).toISOString();
        n.data = b.data.map((d): DataEntry => {
          const prev = n.data.find((p) => p.key === d.key);
          return {
            key: checkKeyName(d.key),
            content_type: d.content_type,
            payload: d.payload ?? null,
            version: d.version ?? (prev === undefined ? 1 : prev.version + 1),
            updated_at: d.updated_at ?? nowIso,
          };
        });
        payload["data"] = n.data;
      }
      const ev = b.push ? state.publish(n.id, "node_state_updated", payload) : undefined;
      return reply(200, { metadata: n.metadata, data: n.data, event_id: ev?.event_id ?? null });
    }
    case "GET requests": {
      const q = ctx.query;
      const since = q.get("since");
      const filter = {
        ...(q.get("path") !== null ? { path: q.get("path") ?? "" } : {}),
        ...(q.get("path_prefix") !== null ? { path_prefix: q.get("path_prefix") ?? "" } : {}),
        ...(q.get("method") !== null ? { method: q.get("method") ?? "" } : {}),
        ...(q.get("node_id") !== null ? { node_id: q.get("node_id") ?? "" } : {}),
        ...(since !== null ? { since: Number(since) } : {}),
      };
      return reply(200, { requests: state.requests.list(filter) });
    }
    case "DELETE requests":
      state.requests.clear();
      return reply(200, {});
    case "GET signing-keys":
      return reply(200, { ...state.keys.view(state.now()), active: state.keys.signer(state.now()).publicKey });
    case "POST signing-key/rotate": {
      const b = parseBody(rotateSigningBody, (await ctx.body()) ?? {});
      let periodMs: number;
      try {
        periodMs = Math.round(parseWireDuration(b.transition_period));
      } catch (err) {
        throw new ApiError(400, "bad_request", (err as Error).message);
      }
      // P must be at least 300 s so events in flight stay valid; `force` lets a test break that on purpose.
      if (periodMs < 300_000 && !b.force) throw new ApiError(400, "bad_request", "transition_period must be at least 300s (pass force: true to override)");
      const now = state.now();
      const validFrom = Math.floor((b.valid_from === undefined ? undefined : parseTimestamp(b.valid_from)) ?? now);
      const next = b.seed === undefined ? SigningKey.generate() : SigningKey.fromHex(b.seed);
      const announcer = state.keys.signer(now);
      const payload = {
        new_signing_public_key: next.publicKey,
        valid_from: new Date(validFrom).toISOString(),
        transition_period: b.transition_period,
      };
      const events = state.activeNodes().map((n) => ({ node_id: n.id, event_id: state.publish(n.id, "signing_key_rotated", payload, undefined, announcer).event_id }));
      state.keys.rotate(next, validFrom, periodMs);
      return reply(200, { ...payload, signing_keys: state.keys.view(now), events });
    }
    case "POST offline":
      state.offline = true;
      return reply(200, { offline: true, dropped: hub.drop(undefined, "end") });
    case "POST online":
      state.offline = false;
      return reply(200, { offline: false });
    default: {
      const m = matchRoute(featureRoutes, ctx);
      if (m === undefined) throw notFound(ctx);
      return m.route.handle(deps, ctx, m.params);
    }
  }
}

function notFound(ctx: RequestContext): ApiError {
  return new ApiError(404, "not_found", `no control route for ${ctx.method} ${ctx.path}`);
}
