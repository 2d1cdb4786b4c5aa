import { createDecipheriv, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encryptSecret, SecretStore } from "./secrets.js";

function decrypt(nsk: string, nonce: string, ciphertext: string): string {
  const body = Buffer.from(ciphertext, "base64");
  const d = createDecipheriv("aes-256-gcm", Buffer.from(nsk, "base64"), Buffer.from(nonce, "base64"));
  d.setAuthTag(body.subarray(body.length - 16));
  return Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]).toString("utf8");
}

describe("encryptSecret (TV-7)", () => {
  const nsk = Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString("base64");
  const nonce = Buffer.from(Array.from({ length: 12 }, (_, i) => i));

  it("reproduces the TV-7 vector with the fixed nonce", () => {
    expect(nsk).toBe("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    const r = encryptSecret(nsk, "s3cret-value", nonce);
    expect(r.nonce).toBe("AAECAwQFBgcICQoL");
    expect(r.ciphertext).toBe("NDG1aaCR723sLeLukfIzBwELiTiHm1ZWcFc3SQ==");
    expect(Buffer.from(r.ciphertext, "base64")).toHaveLength("s3cret-value".length + 16);
    // And independently: node:crypto's decipher gets the plaintext back.
    expect(decrypt(nsk, r.nonce, r.ciphertext)).toBe("s3cret-value");
  });

  it("uses a fresh 12-byte nonce per call and no AAD", () => {
    const key = randomBytes(32).toString("base64");
    const a = encryptSecret(key, "same");
    const b = encryptSecret(key, "same");
    expect(Buffer.from(a.nonce, "base64")).toHaveLength(12);
    expect(a.nonce).not.toBe(b.nonce);
    expect(a.ciphertext).not.toBe(b.ciphertext);
    expect(decrypt(key, b.nonce, b.ciphertext)).toBe("same");
  });

  it("fails on a flipped tag bit", () => {
    const r = encryptSecret(nsk, "s3cret-value", nonce);
    const bytes = Buffer.from(r.ciphertext, "base64");
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    expect(() => decrypt(nsk, r.nonce, bytes.toString("base64"))).toThrow();
  });
});

describe("SecretStore", () => {
  it("versions values, keeps denials out of the index and answers 403/404", () => {
    const s = new SecretStore(() => 0);
    expect(s.set("n", "db", { value: "a" }).version).toBe(1);
    expect(s.set("n", "db", { value: "a" }).version).toBe(1);
    expect(s.set("n", "db", { value: "b" }).version).toBe(2);
    expect(s.set("n", "db", { value: "c", version: 7 }).version).toBe(7);
    s.set("n", "blocked", { denied: true });
    expect(s.refs("n")).toEqual([{ key: "db", version: 7 }]);
    expect(() => s.read("n", "blocked", randomBytes(32).toString("base64"))).toThrow(expect.objectContaining({ status: 403 }) as Error);
    expect(() => s.read("n", "nope", randomBytes(32).toString("base64"))).toThrow(expect.objectContaining({ status: 404 }) as Error);
    expect(() => s.read("other", "db", randomBytes(32).toString("base64"))).toThrow(expect.objectContaining({ status: 404 }) as Error);
    expect(() => s.set("n", "x", {})).toThrow(expect.objectContaining({ status: 400 }) as Error);
    s.set("n", "listed-denied", { denied: true, listed: true });
    expect(s.refs("n").map((r) => r.key)).toEqual(["db", "listed-denied"]);
  });
});
