import { execFileSync } from "node:child_process";
import { randomBytes, sign, verify } from "node:crypto";
import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeKey32,
  ed25519PrivateKeyFromSeed,
  ed25519PublicKey,
  generateWireGuardKeyPair,
  isKey32,
  keyFromHex,
  keyToHex,
  pskFingerprint,
  rawPublicKey,
  wireGuardPublicKey,
} from "./keys.js";

// @noble/ed25519's synchronous API needs a SHA-512 (the independent cross-check below).
ed.hashes.sha512 = sha512;

describe("32-byte keys in base64", () => {
  it("accepts exactly the canonical encodings of 32 bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (b) => {
        const b64 = Buffer.from(b).toString("base64");
        expect(isKey32(b64)).toBe(true);
        expect(decodeKey32(b64, "k").equals(Buffer.from(b))).toBe(true);
      }),
    );
    // The same bytes, but the last symbol carries bits that do not exist: Buffer.from would
    // decode it, yet it is not the canonical text and would compare unequal.
    const k = Buffer.alloc(32, 7).toString("base64");
    const sloppy = `${k.slice(0, 42)}${String.fromCharCode(k.charCodeAt(42) + 1)}=`;
    expect(Buffer.from(sloppy, "base64").toString("base64")).not.toBe(sloppy);
    for (const bad of [sloppy, Buffer.alloc(31).toString("base64"), Buffer.alloc(33).toString("base64"), k.slice(0, 43), `${k}\n`, ` ${k}`, k.replace(/=$/, "A"), "not base64!"]) {
      expect(isKey32(bad), bad).toBe(false);
      expect(() => decodeKey32(bad, "private_key")).toThrow(expect.objectContaining({ code: "invalid_argument", message: "private_key is not a base64-encoded 32-byte key" }));
    }
  });

  it("fingerprints a PSK as sha256 of its raw bytes, the empty PSK as empty", () => {
    // sha256 of 32 zero bytes.
    expect(pskFingerprint(Buffer.alloc(32).toString("base64"))).toBe("66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
    expect(pskFingerprint("")).toBe("");
  });

  it("converts to and from WireGuard's UAPI hex", () => {
    const b64 = randomBytes(32).toString("base64");
    expect(keyToHex(b64)).toMatch(/^[0-9a-f]{64}$/);
    expect(keyFromHex(keyToHex(b64))).toBe(b64);
  });
});

describe("WireGuard (X25519) keys", () => {
  it("generates 32-byte base64 keys whose public half can be re-derived", () => {
    const kp = generateWireGuardKeyPair();
    expect(isKey32(kp.privateKey)).toBe(true);
    expect(isKey32(kp.publicKey)).toBe(true);
    expect(wireGuardPublicKey(kp.privateKey)).toBe(kp.publicKey);
  });

  it("matches the RFC 7748 test vector", () => {
    // RFC 7748 §6.1, Alice's private and public key.
    const priv = keyFromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const pub = keyFromHex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    expect(wireGuardPublicKey(priv)).toBe(pub);
  });

  it("clamps private keys as wg genkey does, and wg derives the same public key", () => {
    for (let i = 0; i < 20; i++) {
      const kp = generateWireGuardKeyPair();
      const raw = Buffer.from(kp.privateKey, "base64");
      expect(raw[0]! & 7).toBe(0);
      expect(raw[31]! & 0xc0).toBe(0x40);
      expect(execFileSync("wg", ["pubkey"], { input: kp.privateKey + "\n" }).toString().trim()).toBe(kp.publicKey);
    }
  });

  it("generates many keys under allocation pressure without stalling", () => {
    // The former generateKeyPairSync + JWK export path could hang forever inside a GC.
    const keep: string[] = [];
    for (let i = 0; i < 5000; i++) keep.push(generateWireGuardKeyPair().publicKey, "x".repeat(2000));
    expect(new Set(keep.filter((k) => k.length === 44)).size).toBe(5000);
  }, 30_000);

  it("refuses a private key that is not a key", () => {
    expect(() => wireGuardPublicKey("nope")).toThrow(expect.objectContaining({ code: "invalid_argument" }));
  });
});

describe("Ed25519 keys", () => {
  // RFC 8032 §7.1 TEST 1.
  const seed = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
  const pub = keyFromHex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");

  it("derives the RFC 8032 public key from a seed, as @noble/ed25519 does", () => {
    expect(rawPublicKey(ed25519PrivateKeyFromSeed(seed))).toBe(pub);
    const s = randomBytes(32);
    expect(rawPublicKey(ed25519PrivateKeyFromSeed(s))).toBe(Buffer.from(ed.getPublicKey(s)).toString("base64"));
  });

  it("builds a verify key from the raw public key", () => {
    const msg = Buffer.from("plexd");
    const sig = sign(null, msg, ed25519PrivateKeyFromSeed(seed));
    const key = ed25519PublicKey(pub);
    expect(key.asymmetricKeyType).toBe("ed25519");
    expect(verify(null, msg, key, sig)).toBe(true);
  });

  it("refuses seeds and public keys of the wrong size", () => {
    expect(() => ed25519PrivateKeyFromSeed(new Uint8Array(31))).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    for (const bad of [Buffer.alloc(31).toString("base64"), Buffer.alloc(33).toString("base64"), pub.replace("=", "")]) {
      expect(() => ed25519PublicKey(bad)).toThrow(expect.objectContaining({ code: "invalid_argument" }));
    }
  });
});
