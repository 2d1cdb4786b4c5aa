import { verify as cryptoVerify } from "node:crypto";
import canonicalize from "canonicalize";
import { parseTimestamp } from "../../proto/lib/duration.js";
import type { ReplayGuard } from "./replay.js";
import type { TrustedKey, TrustedSigningKeys } from "./signing-keys.js";

// Signed event envelopes (docs/architecture.md#the-control-plane-channel). verify() runs the checks in
// exactly the documented order; the order matters for security, not just for the reported reason:
// the nonce is recorded only after the signature passed, so forged events cannot fill the cache.

/** `oversize`: the event was over the size limit and skipped by the stream decoder, unparsed. */
export type RejectReason = "malformed" | "stale" | "future" | "bad_signature" | "replay" | "duplicate" | "oversize";
export const rejectReasons: readonly RejectReason[] = ["malformed", "stale", "future", "bad_signature", "replay", "duplicate", "oversize"];

export interface Envelope {
  event_type: string;
  event_id: string;
  issued_at: string;
  nonce: string;
  payload: Record<string, unknown>;
  signature: string;
}

export type VerifyResult =
  | { ok: true; envelope: Envelope; verifiedWith: "current" | "previous"; issuedAtMs: number }
  | {
      ok: false;
      reason: RejectReason;
      eventId?: string;
      eventType?: string;
      /** A duplicate's nonce, recorded at step 5, and when it expires: to be made durable too. */
      nonce?: { value: string; expiresAt: number };
    };

/** Allowed clock difference between issued_at and now, inclusive (4.4 step 2). */
export const maxSkewMs = 300_000;
/** Nonces live until issued_at + this (4.5). */
export const nonceLifetimeMs = 300_000;
/**
 * Upper bound on one `data` field. Events are small (the largest, policy_updated, is a few
 * hundred KiB at most); the cap keeps one hostile line from costing a large JSON.parse.
 */
export const maxEnvelopeBytes = 1024 * 1024;

const maxIdLength = 128;

type ParseResult = { ok: true; envelope: Envelope; issuedAtMs: number } | { ok: false; eventId?: string; eventType?: string };

/**
 * Step 1 (and the parse of issued_at from step 2): JSON, the six required members with the right
 * types, and a payload that is a JSON object. Members other than the six are ignored and never
 * reach the caller.
 */
export function parseEnvelope(data: string, maxBytes: number = maxEnvelopeBytes): ParseResult {
  // Length in UTF-16 units is a lower bound on UTF-8 bytes and 3× is an upper bound, so the exact
  // byte count is only computed in the narrow band where it matters.
  if (data.length > maxBytes || (data.length * 3 > maxBytes && Buffer.byteLength(data, "utf8") > maxBytes)) return { ok: false };
  let v: unknown;
  try {
    v = JSON.parse(data);
  } catch {
    return { ok: false };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return { ok: false };
  const o = v as Record<string, unknown>;
  const { event_type, event_id, issued_at, nonce, payload, signature } = o;
  if (
    typeof event_type !== "string" ||
    event_type.length === 0 ||
    typeof event_id !== "string" ||
    event_id.length === 0 ||
    event_id.length > maxIdLength ||
    typeof issued_at !== "string" ||
    typeof nonce !== "string" ||
    nonce.length === 0 ||
    nonce.length > maxIdLength ||
    typeof payload !== "object" ||
    payload === null ||
    Array.isArray(payload) ||
    typeof signature !== "string"
  ) {
    return malformedWithIds(o);
  }
  const issuedAtMs = parseTimestamp(issued_at);
  if (issuedAtMs === undefined) return malformedWithIds(o);
  return {
    ok: true,
    issuedAtMs,
    envelope: { event_type, event_id, issued_at, nonce, payload: payload as Record<string, unknown>, signature },
  };
}

// Whatever identifies a malformed event for the security log, cut to a sane length.
function malformedWithIds(o: Record<string, unknown>): { ok: false; eventId?: string; eventType?: string } {
  const r: { ok: false; eventId?: string; eventType?: string } = { ok: false };
  if (typeof o.event_id === "string") r.eventId = o.event_id.slice(0, maxIdLength);
  if (typeof o.event_type === "string") r.eventType = o.event_type.slice(0, maxIdLength);
  return r;
}

/**
 * The exact signed bytes (4.3): RFC 8785 over exactly the five signed members, values as
 * received (issued_at is never re-formatted). Throws if the payload cannot be canonicalized
 * (a lone surrogate, which RFC 8785 forbids).
 */
export function signingInput(e: Pick<Envelope, "event_type" | "event_id" | "issued_at" | "nonce" | "payload">): Buffer {
  const text = canonicalize({ event_type: e.event_type, event_id: e.event_id, issued_at: e.issued_at, nonce: e.nonce, payload: e.payload });
  if (text === undefined) throw new Error("canonicalize returned nothing");
  return Buffer.from(text, "utf8");
}

/** Base64 of exactly 64 bytes in canonical standard encoding with padding, else undefined. */
export function decodeSignature(text: string): Buffer | undefined {
  if (text.length !== 88 || !text.endsWith("==")) return undefined;
  const sig = Buffer.from(text, "base64");
  // Buffer.from skips characters outside the alphabet; the round trip catches them and any
  // non-canonical trailing bits.
  if (sig.length !== 64 || sig.toString("base64") !== text) return undefined;
  return sig;
}

export function verifyWith(key: TrustedKey, msg: Buffer, sig: Buffer): boolean {
  try {
    return cryptoVerify(null, msg, key.key, sig);
  } catch {
    return false;
  }
}

export interface EnvelopeVerifierOptions {
  keys: TrustedSigningKeys;
  replay: ReplayGuard;
  /** Milliseconds since the epoch; normally clock.now. */
  now: () => number;
  maxEnvelopeBytes?: number;
}

/**
 * Runs 4.4 steps 1-6 over one SSE `data` field. The duplicate check (6) only looks; the caller
 * calls markHandled() when the event goes to its handler (its id and nonce durable by then,
 * replay-journal.ts), which also moves the Last-Event-ID cursor.
 */
export class EnvelopeVerifier {
  readonly keys: TrustedSigningKeys;
  readonly replay: ReplayGuard;
  private readonly now: () => number;
  private readonly maxBytes: number;
  /** Rejections by reason since start; exposed for metrics and status. */
  readonly rejected: Record<RejectReason, number> = { malformed: 0, stale: 0, future: 0, bad_signature: 0, replay: 0, duplicate: 0, oversize: 0 };
  verified = 0;
  dispatched = 0;

  constructor(opts: EnvelopeVerifierOptions) {
    this.keys = opts.keys;
    this.replay = opts.replay;
    this.now = opts.now;
    this.maxBytes = opts.maxEnvelopeBytes ?? maxEnvelopeBytes;
  }

  verify(data: string): VerifyResult {
    const r = this.check(data);
    if (r.ok) this.verified++;
    else this.rejected[r.reason]++;
    return r;
  }

  /** The event is handled: its id is a duplicate from now on and the Last-Event-ID cursor. */
  markHandled(eventId: string): void {
    this.replay.recent.add(eventId);
    this.replay.lastEventId = eventId;
  }

  /** markHandled, and counted as dispatched (callers without a journal of their own). */
  markDispatched(eventId: string): void {
    this.markHandled(eventId);
    this.dispatched++;
  }

  private check(data: string): VerifyResult {
    // 1. malformed
    const p = parseEnvelope(data, this.maxBytes);
    if (!p.ok) return reject("malformed", p);
    const env = p.envelope;
    const ids = { eventId: env.event_id, eventType: env.event_type };

    // 2. stale / future, both bounds inclusive
    const now = this.now();
    const age = now - p.issuedAtMs;
    if (age > maxSkewMs) return reject("stale", ids);
    if (age < -maxSkewMs) return reject("future", ids);

    // 3. signature encoding
    const sig = decodeSignature(env.signature);
    if (sig === undefined) return reject("bad_signature", ids);

    // 4. signature over the canonical bytes: current key, else previous during the transition
    let msg: Buffer;
    try {
      msg = signingInput(env);
    } catch {
      return reject("malformed", ids);
    }
    let verifiedWith: "current" | "previous";
    if (verifyWith(this.keys.current, msg, sig)) {
      verifiedWith = "current";
    } else {
      const prev = this.keys.previousAt(now);
      if (prev === undefined || !verifyWith(prev, msg, sig)) return reject("bad_signature", ids);
      // 4.5: a key rotation must come from the current key; the old key cannot introduce a new one.
      if (env.event_type === "signing_key_rotated") return reject("bad_signature", ids);
      verifiedWith = "previous";
    }

    // 5. nonce, recorded only now that the signature is known good
    if (!this.replay.nonces.record(env.nonce, p.issuedAtMs + nonceLifetimeMs, now)) return reject("replay", ids);

    // 6. recently dispatched event id: a quiet duplicate
    if (this.replay.recent.has(env.event_id)) {
      const dup = reject("duplicate", ids);
      if (!dup.ok) dup.nonce = { value: env.nonce, expiresAt: p.issuedAtMs + nonceLifetimeMs };
      return dup;
    }

    return { ok: true, envelope: env, verifiedWith, issuedAtMs: p.issuedAtMs };
  }
}

function reject(reason: RejectReason, ids: { eventId?: string; eventType?: string }): VerifyResult {
  const r: VerifyResult = { ok: false, reason };
  if (ids.eventId !== undefined) r.eventId = ids.eventId;
  if (ids.eventType !== undefined) r.eventType = ids.eventType;
  return r;
}
