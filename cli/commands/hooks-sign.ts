import { createHash } from "node:crypto";
import { chmod, readFile, stat, writeFile } from "node:fs/promises";
import { signChecksum, signingKeyFromPem } from "../../proto/lib/hook-signature.js";
import { UsageError } from "../usage-error.js";

// `plexd hooks sign --key FILE HOOK`: writes HOOK.sig, the Ed25519 signature over the SHA-256
// of HOOK, with the operator's private key (PEM, e.g. `openssl genpkey -algorithm ed25519`).
// Runs on its own, no agent needed; prints the public key to list under hooks.trusted_keys.

export async function hooksSign(keyFile: string, hook: string, json: boolean): Promise<void> {
  const st = await stat(keyFile).catch(() => undefined);
  if (st === undefined) throw new UsageError(`key file ${keyFile} does not exist`);
  if ((st.mode & 0o077) !== 0) throw new UsageError(`key file ${keyFile} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  const key = signingKeyFromPem(await readFile(keyFile, "utf8"));
  const content = await readFile(hook).catch(() => {
    throw new UsageError(`hook file ${hook} cannot be read`);
  });
  const checksum = `sha256:${createHash("sha256").update(content).digest("hex")}`;
  const { sig, publicKey } = signChecksum(checksum, key);
  const sigFile = `${hook}.sig`;
  await writeFile(sigFile, sig, { mode: 0o644 });
  await chmod(sigFile, 0o644);
  if (json) console.log(JSON.stringify({ hook, checksum, signature_file: sigFile, public_key: publicKey }, null, 2));
  else console.log(`${sigFile} written for ${checksum}\npublic key (hooks.trusted_keys): ${publicKey}`);
}
