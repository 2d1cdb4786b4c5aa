import { createDecipheriv } from "node:crypto";
import { PlexdError } from "../../../proto/lib/errors.js";

// Secret values arrive encrypted with the node secret key (docs/mockcp.md#control-plane-api-what-agents-use): AES-256-GCM,
// 12-byte nonce, the 16-byte tag appended to the ciphertext, no additional authenticated data.
// Every failure gives the same error without crypto detail (docs/node-api.md), so a
// caller cannot tell a bad tag from a bad nonce.

const decryptionFailed = (): PlexdError => new PlexdError("internal", "decryption failed");

export function decryptSecret(nsk: Uint8Array, nonce: Uint8Array, ciphertextWithTag: Uint8Array): string {
  if (nsk.length !== 32 || nonce.length !== 12 || ciphertextWithTag.length < 16) throw decryptionFailed();
  try {
    const tag = ciphertextWithTag.subarray(ciphertextWithTag.length - 16);
    const body = ciphertextWithTag.subarray(0, ciphertextWithTag.length - 16);
    const decipher = createDecipheriv("aes-256-gcm", nsk, nonce, { authTagLength: 16 });
    decipher.setAuthTag(tag);
    const plain = Buffer.concat([decipher.update(body), decipher.final()]);
    // fatal: a value that is not UTF-8 is as unusable as a bad tag.
    return new TextDecoder("utf-8", { fatal: true }).decode(plain);
  } catch {
    throw decryptionFailed();
  }
}

/** Strict base64 (a lenient decoder would turn garbage into short, wrong bytes). */
export function decodeBase64(text: unknown): Uint8Array {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw decryptionFailed();
  return Buffer.from(text, "base64");
}
