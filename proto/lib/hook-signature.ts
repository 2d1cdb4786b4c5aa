// Signed hooks (docs/actions.md "Signed hooks"): `<hook>.sig` beside a hook file holds, in
// standard base64 on one line, the Ed25519 signature over the 32 raw bytes of the file's
// SHA-256. The agent verifies it against hooks.trusted_keys (several at once, for rotation);
// `plexd hooks sign` makes it.
import { createPrivateKey, sign, verify, type KeyObject } from "node:crypto";
import { ed25519PublicKey, rawPublicKey } from "./keys.js";
import { PlexdError } from "./errors.js";

/** The digest a signature covers, from a "sha256:<hex>" checksum. */
function digestOf(checksum: string): Buffer {
  const m = /^sha256:([0-9a-f]{64})$/.exec(checksum);
  if (m === null) throw new PlexdError("invalid_argument", `not a sha256 checksum: ${checksum}`);
  return Buffer.from(m[1]!, "hex");
}

/** The index of the first trusted key (base64 raw Ed25519) whose signature `sigText` is over `checksum`, or -1. */
export function trustedSigner(checksum: string, sigText: string, trustedKeys: readonly string[]): number {
  const sig = Buffer.from(sigText.trim(), "base64");
  if (sig.length !== 64) return -1;
  const digest = digestOf(checksum);
  return trustedKeys.findIndex((k) => {
    try {
      return verify(null, digest, ed25519PublicKey(k), sig);
    } catch {
      return false;
    }
  });
}

/** A PEM Ed25519 private key (as `openssl genpkey -algorithm ed25519` writes it). Throws invalid_argument. */
export function signingKeyFromPem(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new PlexdError("invalid_argument", "the key file is not a PEM private key", { cause: err });
  }
  if (key.asymmetricKeyType !== "ed25519") throw new PlexdError("invalid_argument", `the key is ${key.asymmetricKeyType ?? "unknown"}, not Ed25519`);
  return key;
}

/** The `.sig` file content for `checksum`, and the public key that verifies it (for hooks.trusted_keys). */
export function signChecksum(checksum: string, key: KeyObject): { sig: string; publicKey: string } {
  return { sig: sign(null, digestOf(checksum), key).toString("base64") + "\n", publicKey: rawPublicKey(key) };
}
