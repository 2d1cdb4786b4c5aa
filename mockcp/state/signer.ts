import { randomBytes, sign, type KeyObject } from "node:crypto";
import canonicalize from "canonicalize";
import { SignJWT } from "jose";
import { PlexdError } from "../../proto/lib/errors.js";
import { ed25519PrivateKeyFromSeed, rawPublicKey } from "../../proto/lib/keys.js";

/** The five members covered by the signature. */
export interface UnsignedEnvelope {
  event_type: string;
  event_id: string;
  issued_at: string;
  nonce: string;
  payload: Record<string, unknown>;
}

export interface SignedEnvelope extends UnsignedEnvelope {
  signature: string;
}

/** An Ed25519 key pair built from a 32-byte seed (RFC 8032), signing with node:crypto. */
export class SigningKey {
  readonly publicKey: string;
  readonly #privateKey: KeyObject;

  private constructor(seed: Uint8Array) {
    this.#privateKey = ed25519PrivateKeyFromSeed(seed);
    this.publicKey = rawPublicKey(this.#privateKey);
  }

  static fromSeed(seed: Uint8Array): SigningKey {
    return new SigningKey(seed);
  }

  static fromHex(hex: string): SigningKey {
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new PlexdError("invalid_argument", "signing seed must be 64 hex characters (32 bytes)");
    return new SigningKey(Buffer.from(hex, "hex"));
  }

  static generate(): SigningKey {
    return new SigningKey(randomBytes(32));
  }

  /** Pure Ed25519 over the given bytes; returns base64 of the 64-byte signature. */
  signBytes(message: Uint8Array): string {
    return sign(null, message, this.#privateKey).toString("base64");
  }

  /** A compact JWS (EdDSA) over `claims`: session tokens for local action runs. */
  signJwt(claims: Record<string, unknown>): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", typ: "JWT" }).sign(this.#privateKey);
  }

  signEnvelope(env: UnsignedEnvelope): SignedEnvelope {
    return { ...pick(env), signature: this.signBytes(canonicalBytes(env)) };
  }
}

function pick(env: UnsignedEnvelope): UnsignedEnvelope {
  return { event_type: env.event_type, event_id: env.event_id, issued_at: env.issued_at, nonce: env.nonce, payload: env.payload };
}

/** RFC 8785 bytes of exactly the five signed members; extra members never leak into the signature. */
export function canonicalBytes(env: UnsignedEnvelope): Buffer {
  const text = canonicalize(pick(env));
  if (text === undefined) throw new PlexdError("invalid_argument", "envelope cannot be canonicalized");
  return Buffer.from(text, "utf8");
}

/** 16 random bytes as 32 lowercase hex characters, fresh for every transmission. */
export function newNonce(): string {
  return randomBytes(16).toString("hex");
}
