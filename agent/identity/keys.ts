import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { PlexdError } from "../../proto/lib/errors.js";

// WireGuard keys are raw 32-byte X25519 keys in standard base64. node:crypto speaks JWK
// (base64url) for raw key material, so we convert at the boundary.

export interface WireGuardKeyPair {
  privateKey: string;
  publicKey: string;
}

// PKCS#8 wrapping of a raw X25519 private key (RFC 8410): the fixed ASN.1 header
// followed by the 32 key bytes.
const pkcs8X25519Prefix = Buffer.from("302e020100300506032b656e04220420", "hex");

const b64urlToB64 = (s: string): string => Buffer.from(s, "base64url").toString("base64");

export function generateWireGuardKeyPair(): WireGuardKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  return { privateKey: rawPrivate(privateKey), publicKey: rawPublic(publicKey) };
}

function rawPrivate(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" });
  if (typeof jwk.d !== "string") throw new PlexdError("internal", "x25519 export without private part");
  return b64urlToB64(jwk.d);
}

function rawPublic(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new PlexdError("internal", "x25519 export without public part");
  return b64urlToB64(jwk.x);
}

export function decodeKey32(b64: string, what: string): Buffer {
  const trimmed = b64.trim();
  const raw = Buffer.from(trimmed, "base64");
  if (raw.length !== 32 || raw.toString("base64") !== trimmed) {
    throw new PlexdError("invalid_argument", `${what} is not a base64-encoded 32-byte key`);
  }
  return raw;
}

/** The public key belonging to a stored private key (so only the private key is persisted as a secret). */
export function publicKeyOf(privateKeyB64: string): string {
  const raw = decodeKey32(privateKeyB64, "private key");
  const priv = createPrivateKey({ key: Buffer.concat([pkcs8X25519Prefix, raw]), format: "der", type: "pkcs8" });
  return rawPublic(createPublicKey(priv));
}
