import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { generateWireGuardKeyPair, publicKeyOf, decodeKey32 } from "./keys.js";

describe("wireguard keys", () => {
  it("generates 32-byte base64 keys whose public half can be re-derived", () => {
    const kp = generateWireGuardKeyPair();
    expect(Buffer.from(kp.privateKey, "base64")).toHaveLength(32);
    expect(kp.publicKey).toHaveLength(44);
    expect(publicKeyOf(kp.privateKey)).toBe(kp.publicKey);
  });

  it("matches the RFC 7748 test vector", () => {
    // RFC 7748 §6.1, Alice's private and public key.
    const priv = Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex").toString("base64");
    const pub = Buffer.from("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", "hex").toString("base64");
    expect(publicKeyOf(priv)).toBe(pub);
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

  it("rejects keys that are not exactly 32 bytes of canonical base64", () => {
    expect(() => decodeKey32(Buffer.alloc(31).toString("base64"), "k")).toThrow(/32-byte/);
    expect(() => decodeKey32("not base64!", "k")).toThrow(/32-byte/);
  });
});
