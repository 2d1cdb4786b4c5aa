// Key encodings: the one implementation every process uses. WireGuard (X25519) keys, PSKs and
// Ed25519 signing keys all travel as 32 raw bytes in standard base64; WireGuard's UAPI wants
// them in hex. node:crypto holds keys as KeyObjects, reached through fixed DER framing.
//
// Not generateKeyPairSync + JWK export: on Node 20 a garbage collection that runs inside a
// JWK export can destroy an earlier key-generation job, whose destructor takes the mutex the
// export holds — the process hangs for good (docs/decisions.md). DER both ways avoids it.
//
// Pure functions, no module-level state: privhelper imports this too.
import { createHash, createPrivateKey, createPublicKey, randomBytes, type KeyObject } from "node:crypto";
import { PlexdError } from "./errors.js";

/**
 * The whole grammar of a canonical base64 encoding of 32 bytes: 43 symbols, the last one
 * carrying only 4 bits, then one pad. A match is its own re-serialisation, so no decode is
 * needed, which matters at 20,000 peers per request.
 */
const key32Re = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Whether `s` is exactly the canonical base64 of 32 bytes. */
export function isKey32(s: string): boolean {
  return key32Re.test(s);
}

/** The 32 raw bytes of a canonical base64 key; throws invalid_argument naming `what`. */
export function decodeKey32(b64: string, what: string): Buffer {
  if (typeof b64 !== "string" || !key32Re.test(b64)) throw new PlexdError("invalid_argument", `${what} is not a base64-encoded 32-byte key`);
  return Buffer.from(b64, "base64");
}

/** Base64 key → the 64 lowercase hex digits of WireGuard's UAPI. */
export function keyToHex(b64: string): string {
  return Buffer.from(b64, "base64").toString("hex");
}

/** 64 hex digits (UAPI) → base64 key. */
export function keyFromHex(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

/**
 * What ReadMesh reports instead of a PSK, and the agent compares against: sha256 (hex) of
 * the key's 32 raw bytes, so drift is visible without the key leaving privhelper. "" for none.
 */
export function pskFingerprint(pskB64: string): string {
  return pskB64 === "" ? "" : createHash("sha256").update(Buffer.from(pskB64, "base64")).digest("hex");
}

// PKCS#8 and SPKI framing of raw keys (RFC 8410): a fixed ASN.1 header, then the 32 key bytes.
const pkcs8X25519Prefix = Buffer.from("302e020100300506032b656e04220420", "hex");
const pkcs8Ed25519Prefix = Buffer.from("302e020100300506032b657004220420", "hex");
const spkiEd25519Prefix = Buffer.from("302a300506032b6570032100", "hex");

/** The raw 32-byte public key of an X25519 or Ed25519 KeyObject, in base64. */
export function rawPublicKey(key: KeyObject): string {
  const spki = createPublicKey(key).export({ format: "der", type: "spki" });
  if (spki.length !== 44) throw new PlexdError("internal", `public key export of ${spki.length} bytes`);
  return spki.subarray(-32).toString("base64");
}

/** The WireGuard public key of a private key (`wg pubkey`). Throws invalid_argument. */
export function wireGuardPublicKey(privateKeyB64: string): string {
  const raw = decodeKey32(privateKeyB64, "private key");
  return rawPublicKey(createPrivateKey({ key: Buffer.concat([pkcs8X25519Prefix, raw]), format: "der", type: "pkcs8" }));
}

export interface WireGuardKeyPair {
  privateKey: string;
  publicKey: string;
}

/** A new key pair: 32 random bytes clamped as `wg genkey` does (RFC 7748 §5). */
export function generateWireGuardKeyPair(): WireGuardKeyPair {
  const raw = randomBytes(32);
  raw[0]! &= 248;
  raw[31]! &= 127;
  raw[31]! |= 64;
  const privateKey = raw.toString("base64");
  raw.fill(0);
  return { privateKey, publicKey: wireGuardPublicKey(privateKey) };
}

/** An Ed25519 signing key from its 32-byte seed (RFC 8032); node:crypto has no raw-seed import. */
export function ed25519PrivateKeyFromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new PlexdError("invalid_argument", `Ed25519 seed must be 32 bytes, got ${seed.length}`);
  return createPrivateKey({ key: Buffer.concat([pkcs8Ed25519Prefix, seed]), format: "der", type: "pkcs8" });
}

/** A verify key from the base64 of a raw 32-byte Ed25519 public key. Throws invalid_argument. */
export function ed25519PublicKey(b64: string): KeyObject {
  const raw = decodeKey32(b64, "Ed25519 public key");
  try {
    return createPublicKey({ key: Buffer.concat([spkiEd25519Prefix, raw]), format: "der", type: "spki" });
  } catch (err) {
    throw new PlexdError("invalid_argument", "not a valid Ed25519 public key", { cause: err });
  }
}
