import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from "node:crypto";
import { PlexdError } from "../../proto/lib/errors.js";

// WireGuard keys are raw 32-byte X25519 keys in standard base64; node:crypto holds them as
// KeyObjects, so we convert at the boundary through fixed DER framing.
//
// Not generateKeyPairSync + JWK export: on Node 20 a garbage collection that runs inside a
// JWK export can destroy an earlier key-generation job, whose destructor takes the mutex
// the export holds — the process hangs for good (seen here, main thread on a futex).

export interface WireGuardKeyPair {
  privateKey: string;
  publicKey: string;
}

// PKCS#8 wrapping of a raw X25519 private key (RFC 8410): the fixed ASN.1 header
// followed by the 32 key bytes. An SPKI X25519 public key ends in its 32 raw bytes.
const pkcs8X25519Prefix = Buffer.from("302e020100300506032b656e04220420", "hex");

/** A new key pair: 32 random bytes clamped as `wg genkey` does (RFC 7748 §5). */
export function generateWireGuardKeyPair(): WireGuardKeyPair {
  const raw = randomBytes(32);
  raw[0]! &= 248;
  raw[31]! &= 127;
  raw[31]! |= 64;
  const privateKey = raw.toString("base64");
  raw.fill(0);
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

function rawPublic(key: KeyObject): string {
  const spki = key.export({ format: "der", type: "spki" });
  if (spki.length !== 44) throw new PlexdError("internal", `x25519 public key export of ${spki.length} bytes`);
  return spki.subarray(-32).toString("base64");
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
