import { z } from "zod";
import type { Logger } from "../util/log.js";
import { peerSchema } from "../mesh/peer.js";
import { foldBridgeEvent } from "../bridge/desired.js";
import type { Change, DesiredState, DesiredStateStore, Slice } from "../state/desired.js";

// Routes each verified event (docs/architecture.md#the-control-plane-channel) to a handler that writes the
// desired-state store. No handler touches the kernel: reconcilers converge from the
// store, so a missed or duplicated event cannot leave drift behind.

export interface SigningKeyRotation {
  new_signing_public_key: string;
  valid_from: string;
  transition_period: string;
}

export interface DispatchContext {
  store: DesiredStateStore;
  log: Logger;
  mode: "node" | "bridge";
  /** Verified with the current key (signing_key_rotated is only honoured then). */
  verifiedWith: "current" | "previous";
  onSigningKeyRotated: (rotation: SigningKeyRotation) => void;
  onRotateKeys: (reason: string) => void;
  triggerReconcile: (why: string) => void;
  /** action_request goes to the actions feature (its own admission, ack and replay memory). */
  onActionRequest?: (eventId: string, payload: unknown) => void;
}

export type DispatchOutcome = "applied" | "unchanged" | "deferred" | "ignored" | "unknown_type" | "invalid_payload";

const peerRemoved = z.object({ peer_id: z.string().min(1) });
const endpointChanged = z.object({ peer_id: z.string().min(1), endpoint: z.string() });
const policyRule = z.object({
  src: z.string(),
  dst: z.string(),
  port: z.number().int().min(0).max(65535).default(0),
  protocol: z.string().default(""),
  action: z.string(),
});
const policyUpdated = z.object({ policies: z.array(z.object({ id: z.string(), rules: z.array(policyRule).nullish().transform((r) => r ?? []) })).nullish().transform((p) => p ?? []) });
const signingKeyRotated = z.object({ new_signing_public_key: z.string(), valid_from: z.string(), transition_period: z.string() });
const rotateKeys = z.object({ reason: z.string().nullish() });
const dataEntry = z.object({ key: z.string(), content_type: z.string(), payload: z.unknown(), version: z.number().int().min(1), updated_at: z.string() });
const nodeStateUpdated = z.object({ metadata: z.record(z.string(), z.string()).nullish(), data: z.array(dataEntry).nullish() });
const nodeSecretsUpdated = z.object({ secret_refs: z.array(z.object({ key: z.string(), version: z.number().int() })).nullish().transform((r) => r ?? []) });

const keyGrammar = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Events whose features arrive with later capabilities: stored and logged, not dropped. */
const deferredTypes = new Set(["action_request", "session_revoked", "ssh_session_setup"]);
const bridgeTypes = new Set([
  "bridge_config_updated",
  "relay_session_assigned",
  "relay_session_revoked",
  "user_access_config_updated",
  "user_access_peer_assigned",
  "user_access_peer_revoked",
  "ingress_config_updated",
  "ingress_rule_assigned",
  "ingress_rule_revoked",
  "site_to_site_config_updated",
  "site_to_site_tunnel_assigned",
  "site_to_site_tunnel_revoked",
]);

const maxDeferred = 1000;

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

function mutate(ctx: DispatchContext, fn: (s: DesiredState) => Change[] | undefined): DispatchOutcome {
  return ctx.store.update(fn).size > 0 ? "applied" : "unchanged";
}

export function dispatchEvent(eventType: string, eventId: string, payload: unknown, ctx: DispatchContext): DispatchOutcome {
  const parse = <T>(schema: z.ZodType<T>): T | undefined => {
    const r = schema.safeParse(payload);
    if (r.success) return r.data;
    ctx.log.warn({ event_type: eventType, event_id: eventId, problems: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) }, "event payload invalid; ignored");
    return undefined;
  };

  switch (eventType) {
    case "peer_added":
    case "peer_key_rotated": {
      const peer = parse(peerSchema);
      if (!peer) return "invalid_payload";
      // peer_added replaces a peer with the same id (docs/architecture.md#the-control-plane-channel); peer_key_rotated swaps key and PSK.
      return mutate(ctx, (s) => (same(s.peers[peer.id], peer) ? undefined : ((s.peers[peer.id] = peer), [{ peers: [peer.id] }])));
    }
    case "peer_removed": {
      const p = parse(peerRemoved);
      if (!p) return "invalid_payload";
      return mutate(ctx, (s) => (p.peer_id in s.peers ? (delete s.peers[p.peer_id], [{ peers: [p.peer_id] }]) : undefined));
    }
    case "peer_endpoint_changed": {
      const p = parse(endpointChanged);
      if (!p) return "invalid_payload";
      return mutate(ctx, (s) => {
        const peer = s.peers[p.peer_id];
        if (!peer || peer.endpoint === p.endpoint) return undefined;
        s.peers[p.peer_id] = { ...peer, endpoint: p.endpoint };
        return [{ peers: [p.peer_id] }];
      });
    }
    case "policy_updated": {
      const p = parse(policyUpdated);
      if (!p) return "invalid_payload";
      const outcome = mutate(ctx, (s) => (same(s.policies, p.policies) ? undefined : ((s.policies = p.policies), ["policies"])));
      ctx.triggerReconcile("policy_updated");
      return outcome;
    }
    case "signing_key_rotated": {
      const p = parse(signingKeyRotated);
      if (!p) return "invalid_payload";
      if (ctx.verifiedWith !== "current") {
        ctx.log.warn({ event_id: eventId }, "signing_key_rotated verified only with the previous key; ignored");
        return "ignored";
      }
      ctx.onSigningKeyRotated(p);
      return "applied";
    }
    case "rotate_keys": {
      const p = parse(rotateKeys);
      if (!p) return "invalid_payload";
      ctx.onRotateKeys(p.reason ?? "");
      return "applied";
    }
    case "node_state_updated": {
      const p = parse(nodeStateUpdated);
      if (!p) return "invalid_payload";
      return mutate(ctx, (s) => {
        const changed: Slice[] = [];
        if (p.metadata != null && !same(s.metadata, p.metadata)) {
          s.metadata = p.metadata;
          changed.push("metadata");
        }
        if (p.data != null) {
          const valid = p.data.filter((d) => {
            if (keyGrammar.test(d.key)) return true;
            ctx.log.warn({ key: d.key }, "data entry with invalid key dropped");
            return false;
          });
          if (!same(s.data, valid)) {
            s.data = valid;
            changed.push("data");
          }
        }
        return changed;
      });
    }
    case "node_secrets_updated": {
      const p = parse(nodeSecretsUpdated);
      if (!p) return "invalid_payload";
      return mutate(ctx, (s) => (same(s.secret_refs, p.secret_refs) ? undefined : ((s.secret_refs = p.secret_refs), ["secret_refs"])));
    }
    case "action_request":
      if (ctx.onActionRequest === undefined) break;
      ctx.onActionRequest(eventId, payload);
      return "applied";
    default:
      break;
  }
  if (bridgeTypes.has(eventType) && ctx.mode === "bridge") {
    // The bridge services converge from the store (agent/bridge/manager.ts), never from the event.
    const bridge = structuredClone(ctx.store.state.bridge ?? {});
    const outcome = foldBridgeEvent(bridge, eventType, payload);
    if (outcome === "reconcile") ctx.triggerReconcile(eventType);
    if (outcome === "invalid_payload") ctx.log.warn({ event_type: eventType, event_id: eventId }, "bridge event payload invalid; ignored");
    if (outcome !== "changed") return outcome === "reconcile" ? "applied" : outcome === "invalid_payload" ? "invalid_payload" : "unchanged";
    return mutate(ctx, (s) => ((s.bridge = bridge), ["bridge"]));
  }
  if (deferredTypes.has(eventType)) {
    ctx.store.update((s) => {
      s.deferred[`${eventType}:${eventId}`] = payload;
      // Bounded: the oldest entries go first (object keys keep insertion order).
      const keys = Object.keys(s.deferred);
      for (const k of keys.slice(0, Math.max(0, keys.length - maxDeferred))) delete s.deferred[k];
      return ["deferred"];
    });
    ctx.log.info({ event_type: eventType, event_id: eventId }, "event stored; its feature is not available in this version yet");
    return "deferred";
  }
  if (bridgeTypes.has(eventType)) {
    ctx.log.debug({ event_type: eventType, event_id: eventId }, "bridge event ignored in node mode");
    return "ignored";
  }
  ctx.log.debug({ event_type: eventType, event_id: eventId }, "unknown event type ignored");
  return "unknown_type";
}
