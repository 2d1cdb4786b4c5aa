import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { rawPublicKey } from "./keys.js";
import { signChecksum, signingKeyFromPem, trustedSigner } from "./hook-signature.js";

const pair = () => {
  const { privateKey } = generateKeyPairSync("ed25519");
  return { key: privateKey, pub: rawPublicKey(privateKey), pem: privateKey.export({ format: "pem", type: "pkcs8" }).toString() };
};
const sum = "sha256:" + "ab".repeat(32);
const other = "sha256:" + "cd".repeat(32);

describe("hook signatures", () => {
  it("are verified by any trusted key and name which one", () => {
    const [a, b, c] = [pair(), pair(), pair()];
    const { sig, publicKey } = signChecksum(sum, signingKeyFromPem(b.pem));
    expect(publicKey).toBe(b.pub);
    expect(trustedSigner(sum, sig, [a.pub, b.pub])).toBe(1);
    expect(trustedSigner(sum, sig, [a.pub, c.pub])).toBe(-1);
    expect(trustedSigner(other, sig, [a.pub, b.pub])).toBe(-1);
  });

  it("refuse garbage without throwing", () => {
    const a = pair();
    expect(trustedSigner(sum, "not base64 at all", [a.pub])).toBe(-1);
    expect(trustedSigner(sum, Buffer.alloc(64).toString("base64"), ["short"])).toBe(-1);
  });

  it("sign only with an Ed25519 PEM key", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    expect(() => signingKeyFromPem(rsa)).toThrow(/not Ed25519/);
    expect(() => signingKeyFromPem("nope")).toThrow(/not a PEM private key/);
  });
});
