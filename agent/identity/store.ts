import { mkdir, readFile, rename, stat, rm, readdir } from "node:fs/promises";
import { join } from "node:path";
import { PlexdError } from "../../proto/lib/errors.js";
import { isMeshIp } from "../../proto/lib/net.js";
import { plainWriter, writeFileAtomic, writeJsonAtomic, type DataWriter } from "../util/atomic.js";
import { decodeKey32, wireGuardPublicKey } from "../../proto/lib/keys.js";

// The node identity on disk (docs/upgrade.md#what-lives-where). Every file is 0600 inside the
// 0700 data_dir and written atomically, so a crash mid-registration never leaves a
// half-written identity that would be mistaken for a valid one.

export interface SigningKeys {
  current: string;
  previous: string | null;
  transition_expires: string | null;
}

export interface Identity {
  nodeId: string;
  meshIp: string;
  privateKey: string;
  publicKey: string;
  nodeSecretKey: string;
  identityToken: string;
  signingKeys: SigningKeys;
}

export const identityFiles = ["identity.json", "private_key", "node_secret_key", "identity_token", "signing_keys.json"] as const;

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export type LoadResult =
  | { kind: "none" }
  | { kind: "loaded"; identity: Identity }
  | { kind: "invalid"; movedTo: string; reason: string };

function parseIdentity(files: Record<string, string | undefined>): Identity {
  const meta = JSON.parse(files["identity.json"] ?? "") as { node_id?: unknown; mesh_ip?: unknown };
  if (typeof meta.node_id !== "string" || meta.node_id === "") throw new Error("identity.json: node_id missing");
  if (typeof meta.mesh_ip !== "string" || !isMeshIp(meta.mesh_ip)) throw new Error("identity.json: mesh_ip invalid");
  const privateKey = (files.private_key ?? "").trim();
  const nodeSecretKey = (files.node_secret_key ?? "").trim();
  decodeKey32(privateKey, "private_key");
  decodeKey32(nodeSecretKey, "node_secret_key");
  const identityToken = (files.identity_token ?? "").trim();
  if (identityToken === "") throw new Error("identity_token empty");
  let signingKeys: SigningKeys;
  if (files["signing_keys.json"] === undefined) throw new Error("signing_keys.json missing");
  else {
    const sk = JSON.parse(files["signing_keys.json"]) as Partial<SigningKeys>;
    if (typeof sk.current !== "string") throw new Error("signing_keys.json: current missing");
    signingKeys = { current: sk.current, previous: sk.previous ?? null, transition_expires: sk.transition_expires ?? null };
  }
  return { nodeId: meta.node_id, meshIp: meta.mesh_ip, privateKey, publicKey: wireGuardPublicKey(privateKey), nodeSecretKey, identityToken, signingKeys };
}

/** Loads the stored identity; a partial or corrupt one is moved aside (docs/architecture.md#lifecycle). */
export async function loadIdentity(dataDir: string, now = Date.now()): Promise<LoadResult> {
  const files: Record<string, string | undefined> = {};
  for (const f of identityFiles) files[f] = await readOptional(join(dataDir, f));
  const present = identityFiles.filter((f) => files[f] !== undefined);
  if (present.length === 0) return { kind: "none" };
  try {
    return { kind: "loaded", identity: parseIdentity(files) };
  } catch (err) {
    const movedTo = await moveIdentityAside(dataDir, "invalid", now);
    return { kind: "invalid", movedTo, reason: (err as Error).message };
  }
}

/** Moves every identity file into `identity.<label>-<unix-ts>/` (used for invalid and deregistered identities). */
export async function moveIdentityAside(dataDir: string, label: "invalid" | "deregistered", now = Date.now()): Promise<string> {
  const dir = join(dataDir, `identity.${label}-${Math.floor(now / 1000)}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const f of [...identityFiles, "private_key.next"]) {
    await rename(join(dataDir, f), join(dir, f)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
  return dir;
}

export async function saveIdentity(dataDir: string, id: Identity): Promise<void> {
  // Secrets first and identity.json last: identity.json is what makes the set look complete.
  await writeFileAtomic(join(dataDir, "private_key"), id.privateKey + "\n");
  await writeFileAtomic(join(dataDir, "node_secret_key"), id.nodeSecretKey + "\n");
  await writeFileAtomic(join(dataDir, "identity_token"), id.identityToken + "\n");
  await writeJsonAtomic(join(dataDir, "signing_keys.json"), id.signingKeys);
  await writeJsonAtomic(join(dataDir, "identity.json"), { node_id: id.nodeId, mesh_ip: id.meshIp });
}

export async function saveSigningKeys(dataDir: string, keys: SigningKeys, writer: DataWriter = plainWriter): Promise<void> {
  await writer.writeJsonAtomic(join(dataDir, "signing_keys.json"), keys);
}

/**
 * data_dir must be a directory owned by the running user and closed to everyone else
 * (0700). A missing one is created; a wrong one is a configuration error, because
 * silently fixing ownership could hand someone else's keys to this process.
 */
export async function prepareDataDir(dataDir: string): Promise<void> {
  let st;
  try {
    st = await stat(dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw PlexdError.from(err);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    st = await stat(dataDir);
  }
  if (!st.isDirectory()) throw new PlexdError("failed_precondition", `data_dir: ${dataDir} is not a directory`);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) throw new PlexdError("failed_precondition", `data_dir: ${dataDir} is owned by uid ${st.uid}, not by the running user (uid ${uid})`);
  if ((st.mode & 0o077) !== 0) {
    throw new PlexdError("failed_precondition", `data_dir: ${dataDir} has mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}, must be 0700`);
  }
}

/**
 * Removes every file plexd keeps in data_dir (deregister --purge), leaving the directory itself.
 * identity.json goes first: a running agent's DataDirFence takes its absence as the sign to
 * stop writing, and anything it wrote before that is in the listings that follow. A write
 * still in flight can refill a directory while it is being removed (ENOTEMPTY); the next
 * round takes it, so the loop ends with data_dir empty rather than with an error.
 */
export async function purgeDataDir(dataDir: string): Promise<void> {
  await rm(join(dataDir, "identity.json"), { force: true });
  for (let round = 1; ; round++) {
    const entries = await readdir(dataDir);
    if (entries.length === 0) return;
    for (const entry of entries) {
      await rm(join(dataDir, entry), { recursive: true, force: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOTEMPTY" || round >= 100) throw err;
      });
    }
    if (round > 1) await new Promise((r) => setTimeout(r, 10));
  }
}
