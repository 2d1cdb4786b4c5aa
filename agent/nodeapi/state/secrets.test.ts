import { describe, expect, it } from "vitest";
import { PlexdError } from "../../../proto/lib/errors.js";
import { decodeBase64, decryptSecret } from "./secrets.js";

// TV-7: a secret encrypted by the control plane (AES-256-GCM with the NSK, docs/mockcp.md).
const nsk = Buffer.from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "base64");
const nonce = Buffer.from("AAECAwQFBgcICQoL", "base64");
const ciphertext = Buffer.from("NDG1aaCR723sLeLukfIzBwELiTiHm1ZWcFc3SQ==", "base64");

function failure(fn: () => unknown): PlexdError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return PlexdError.from(err);
  }
}

describe("secret decryption (TV-7)", () => {
  it("decrypts the test vector", () => {
    expect(nsk).toEqual(Buffer.from([...Array(32).keys()]));
    expect(decryptSecret(nsk, nonce, ciphertext)).toBe("s3cret-value");
  });

  it("a flipped tag bit, an 11-byte nonce and a 31-byte NSK fail with the one generic error", () => {
    const flipped = Buffer.from(ciphertext);
    flipped[flipped.length - 1]! ^= 0x01;
    for (const fn of [
      () => decryptSecret(nsk, nonce, flipped),
      () => decryptSecret(nsk, nonce.subarray(0, 11), ciphertext),
      () => decryptSecret(nsk.subarray(0, 31), nonce, ciphertext),
      () => decryptSecret(nsk, nonce, ciphertext.subarray(0, 10)),
    ]) {
      const err = failure(fn);
      expect(err?.code).toBe("internal");
      expect(err?.message).toBe("decryption failed");
    }
  });

  it("rejects malformed base64 instead of decoding garbage", () => {
    expect(Buffer.from(decodeBase64("AAECAwQFBgcICQoL"))).toEqual(nonce);
    for (const bad of ["AAEC*wQF", "AAE", 42, undefined]) expect(failure(() => decodeBase64(bad))?.message).toBe("decryption failed");
  });
});
