import { ApiError, badRequest } from "../state/apierror.js";
import { newNonce, SigningKey, type SignedEnvelope } from "../state/signer.js";
import type { MockState } from "../state/store.js";

export const badEventKinds = [
  "wrong_key",
  "tampered_payload",
  "stale",
  "future",
  "reused_nonce",
  "duplicate_id",
  "malformed_json",
  "oversize",
  "missing_field",
  "previous_key",
] as const;
export type BadEventKind = (typeof badEventKinds)[number];

export const envelopeFields = ["event_type", "event_id", "issued_at", "nonce", "payload", "signature"] as const;

export interface BadEventOptions {
  kind: BadEventKind;
  /** Type and payload of the envelope; default a harmless `peer_removed` of an unknown peer. */
  event_type?: string | undefined;
  payload?: Record<string, unknown> | undefined;
  /** missing_field: which member to leave out (default `signature`). */
  field?: (typeof envelopeFields)[number] | undefined;
  /** stale/future: how far issued_at is off (default 600 s, well outside the ±300 s window). */
  offset_seconds?: number | undefined;
  /** oversize: minimum length of the data line in bytes (default 1 MiB + 1). */
  size?: number | undefined;
}

export interface BadEvent {
  kind: BadEventKind;
  /** SSE `id:` line; absent when the kind leaves no usable id. */
  id: string | undefined;
  event_type: string;
  data: string;
}

/**
 * Builds one deliberately invalid envelope. Each kind breaks exactly one check of
 * the agent's envelope verification (docs/architecture.md#the-control-plane-channel) and is otherwise well-formed, so an agent that accepts it has a
 * bug in that specific check. Bad events never enter the replay buffer.
 */
export function buildBadEvent(state: MockState, last: SignedEnvelope | undefined, opts: BadEventOptions): BadEvent {
  const now = state.now();
  const signer = state.keys.signer(now);
  const eventType = opts.event_type ?? "peer_removed";
  const payload = opts.payload ?? { peer_id: "n_bad_event" };
  const offsetMs = (opts.offset_seconds ?? 600) * 1000;
  const base = { event_type: eventType, event_id: state.newEventId(), issued_at: new Date(now).toISOString(), nonce: newNonce(), payload };
  const out = (env: object, id: string | undefined = base.event_id): BadEvent => ({ kind: opts.kind, id, event_type: eventType, data: JSON.stringify(env) });

  switch (opts.kind) {
    case "wrong_key":
      return out(SigningKey.generate().signEnvelope(base));
    case "tampered_payload": {
      const env = signer.signEnvelope(base);
      return out({ ...env, payload: { ...payload, tampered: true } });
    }
    case "stale":
      return out(signer.signEnvelope({ ...base, issued_at: new Date(now - offsetMs).toISOString() }));
    case "future":
      return out(signer.signEnvelope({ ...base, issued_at: new Date(now + offsetMs).toISOString() }));
    case "reused_nonce":
      if (last === undefined) throw new ApiError(409, "no_previous_event", "reused_nonce needs an event already sent to this node");
      return out(signer.signEnvelope({ ...base, nonce: last.nonce }));
    case "duplicate_id":
      if (last === undefined) throw new ApiError(409, "no_previous_event", "duplicate_id needs an event already sent to this node");
      // Same id, type and payload as the last real event, with a fresh nonce and a valid
      // signature: the agent must drop it as a duplicate (TV-5).
      return {
        kind: opts.kind,
        id: last.event_id,
        event_type: last.event_type,
        data: JSON.stringify(signer.signEnvelope({ ...last, issued_at: base.issued_at, nonce: base.nonce })),
      };
    case "malformed_json": {
      const text = JSON.stringify(signer.signEnvelope(base));
      return { kind: opts.kind, id: base.event_id, event_type: eventType, data: text.slice(0, Math.floor(text.length / 2)) };
    }
    case "oversize": {
      const size = opts.size ?? 1024 * 1024 + 1;
      if (!Number.isInteger(size) || size < 1 || size > 64 * 1024 * 1024) throw badRequest("size must be 1..67108864");
      const probe = JSON.stringify(signer.signEnvelope({ ...base, payload: { ...payload, padding: "" } })).length;
      const padding = "x".repeat(Math.max(0, size - probe));
      return out(signer.signEnvelope({ ...base, payload: { ...payload, padding } }));
    }
    case "previous_key": {
      // Signed by the key retired in the last rotation: valid while the agent's transition
      // window is open, a forgery-equivalent after it (TV-6).
      const prev = state.keys.previous;
      if (prev === undefined) throw new ApiError(409, "no_previous_key", "previous_key needs a signing-key rotation first");
      return out(prev.signEnvelope(base));
    }
    case "missing_field": {
      const field = opts.field ?? "signature";
      const env: Record<string, unknown> = { ...signer.signEnvelope(base) };
      delete env[field];
      return { kind: opts.kind, id: field === "event_id" ? undefined : base.event_id, event_type: eventType, data: JSON.stringify(env) };
    }
  }
}
