import type { KeyObject } from "node:crypto";
import { z } from "zod";
import { PlexdError } from "../../proto/lib/errors.js";
import { parseTimestamp, parseWireDuration } from "../../proto/lib/duration.js";
import { ed25519PublicKey } from "../../proto/lib/keys.js";

// The trusted signing set of docs/architecture.md#the-control-plane-channel: `current` always, plus `previous`
// while `now < transition_expires`. Stored in wire form (base64 keys, RFC 3339 expiry exactly as
// received, so state-response adoption is byte-for-byte) with KeyObjects cached beside it,
// because building a KeyObject per event would cost more than the verify itself.

/** Wire/persisted shape; same field names as `signing_keys` in the state response (3.8). */
export interface SigningKeysJson {
  current: string;
  previous?: string | null;
  transition_expires?: string | null;
}

export interface TrustedKey {
  /** Base64 of the 32-byte Ed25519 public key, as received. */
  readonly b64: string;
  readonly key: KeyObject;
}

const rotationSchema = z.object({
  new_signing_public_key: z.string(),
  valid_from: z.string(),
  transition_period: z.string(),
});

const jsonSchema = z.object({
  current: z.string(),
  previous: z.string().nullish(),
  transition_expires: z.string().nullish(),
});

export class TrustedSigningKeys {
  private cur: TrustedKey;
  private prev: TrustedKey | undefined;
  private expiresText: string | undefined;
  private expiresMs: number | undefined;

  private constructor(cur: TrustedKey, prev: TrustedKey | undefined, expiresText: string | undefined) {
    this.cur = cur;
    this.prev = prev;
    this.setExpiry(expiresText);
  }

  /** Starts the set from `signing_public_key` at registration. */
  static fromCurrent(b64: string): TrustedSigningKeys {
    return new TrustedSigningKeys({ b64, key: ed25519PublicKey(b64) }, undefined, undefined);
  }

  /** Restores a persisted set, or takes `signing_keys` from a state response. Throws invalid_argument. */
  static fromJSON(json: unknown): TrustedSigningKeys {
    const s = parse(json);
    return new TrustedSigningKeys(s.cur, s.prev, s.expires);
  }

  get current(): TrustedKey {
    return this.cur;
  }

  get previous(): TrustedKey | undefined {
    return this.prev;
  }

  get transitionExpires(): string | undefined {
    return this.expiresText;
  }

  /**
   * The previous key if it is still accepted at `now` (strictly before transition_expires).
   * A previous key without a parseable expiry is never accepted: it is trusted
   * only while now < transition_expires.
   */
  previousAt(now: number): TrustedKey | undefined {
    if (this.prev === undefined || this.expiresMs === undefined) return undefined;
    return now < this.expiresMs ? this.prev : undefined;
  }

  /**
   * Applies a verified `signing_key_rotated` payload (6.2): previous := current,
   * current := new key, transition_expires := valid_from + transition_period. A second rotation
   * drops the old previous. Re-applying the rotation to the key that is already current changes
   * nothing (handlers are idempotent, 5). The caller must have checked that the event verified
   * against the current key; EnvelopeVerifier enforces that. Throws invalid_argument.
   * Returns true when the set changed.
   */
  applyRotation(payload: unknown): boolean {
    const p = rotationSchema.safeParse(payload);
    if (!p.success) throw new PlexdError("invalid_argument", `invalid signing_key_rotated payload: ${p.error.message}`);
    const validFrom = parseTimestamp(p.data.valid_from);
    if (validFrom === undefined) throw new PlexdError("invalid_argument", "signing_key_rotated: valid_from is not an RFC 3339 timestamp");
    const period = parseWireDuration(p.data.transition_period);
    const key = ed25519PublicKey(p.data.new_signing_public_key);
    if (p.data.new_signing_public_key === this.cur.b64) return false;
    // A period below the CP's contractual 300 s minimum is applied as sent: the event is signed by
    // the current key, and a short period only shortens how long the old key stays trusted.
    const expires = new Date(Math.floor(validFrom + period)).toISOString();
    this.prev = this.cur;
    this.cur = { b64: p.data.new_signing_public_key, key };
    this.setExpiry(expires);
    this.rotations++;
    return true;
  }

  /**
   * Rotation events applied so far. A state document fetched before one of them carries the
   * old set; the caller compares this count from before the fetch and then skips adopt().
   */
  rotations = 0;

  /** Adopts `signing_keys` from a state response exactly as sent (6.2). Returns true when it changed. */
  adopt(json: unknown): boolean {
    const s = parse(json);
    const changed = s.cur.b64 !== this.cur.b64 || s.prev?.b64 !== this.prev?.b64 || s.expires !== this.expiresText;
    this.cur = s.cur.b64 === this.cur.b64 ? this.cur : s.cur;
    this.prev = s.prev === undefined ? undefined : s.prev.b64 === this.prev?.b64 ? this.prev : s.prev;
    this.setExpiry(s.expires);
    return changed;
  }

  toJSON(): SigningKeysJson {
    const out: SigningKeysJson = { current: this.cur.b64 };
    if (this.prev !== undefined) out.previous = this.prev.b64;
    if (this.expiresText !== undefined) out.transition_expires = this.expiresText;
    return out;
  }

  private setExpiry(text: string | undefined): void {
    this.expiresText = text;
    this.expiresMs = text === undefined ? undefined : parseTimestamp(text);
  }
}

function parse(json: unknown): { cur: TrustedKey; prev: TrustedKey | undefined; expires: string | undefined } {
  const p = jsonSchema.safeParse(json);
  if (!p.success) throw new PlexdError("invalid_argument", `invalid signing keys: ${p.error.message}`);
  const expires = p.data.transition_expires ?? undefined;
  if (expires !== undefined && parseTimestamp(expires) === undefined) {
    throw new PlexdError("invalid_argument", "signing keys: transition_expires is not an RFC 3339 timestamp");
  }
  const prevB64 = p.data.previous ?? undefined;
  return {
    cur: { b64: p.data.current, key: ed25519PublicKey(p.data.current) },
    prev: prevB64 === undefined ? undefined : { b64: prevB64, key: ed25519PublicKey(prevB64) },
    expires,
  };
}
