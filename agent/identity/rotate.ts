import { readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CpClient } from "../controlplane/http.js";
import { describeError } from "../controlplane/http.js";
import { peerListSchema, type Peer } from "../mesh/peer.js";
import { plainWriter, type DataWriter } from "../util/atomic.js";
import type { Logger } from "../util/log.js";
import { decodeKey32, generateWireGuardKeyPair, wireGuardPublicKey } from "../../proto/lib/keys.js";
import type { Identity } from "./store.js";

// Node key rotation (docs/architecture.md#the-control-plane-channel). The pending key
// is on disk before the control plane hears of it, so a crash between the two resubmits
// the same key instead of stranding the node with a key nobody knows.

const rotateResponse = z.object({
  updated_peers: peerListSchema,
  node_secret_key: z.string().nullish(),
});

export interface RotationDeps {
  dataDir: string;
  /** Writes private_key.next and node_secret_key (the agent's DataDirFence). */
  writer?: DataWriter;
  cp: CpClient;
  identity: Identity;
  log: Logger;
  signal: AbortSignal;
  backoffMs: () => number;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Writes the new key and complete peer set into the desired state; resolves once applied. */
  applyKeyAndPeers: (privateKey: string, peers: Peer[]) => Promise<void>;
}

const pendingFile = (dataDir: string): string => join(dataDir, "private_key.next");

export async function hasPendingKey(dataDir: string): Promise<boolean> {
  try {
    await readFile(pendingFile(dataDir));
    return true;
  } catch {
    return false;
  }
}

async function pendingOrNew(dataDir: string, writer: DataWriter): Promise<string> {
  try {
    const text = (await readFile(pendingFile(dataDir), "utf8")).trim();
    decodeKey32(text, "private_key.next");
    return text;
  } catch {
    const kp = generateWireGuardKeyPair();
    await writer.writeFileAtomic(pendingFile(dataDir), kp.privateKey + "\n");
    return kp.privateKey;
  }
}

/** Runs one rotation to completion; transient failures retry with the same pending key. */
export async function rotateNodeKey(deps: RotationDeps): Promise<void> {
  const { identity, log } = deps;
  const writer = deps.writer ?? plainWriter;
  const nextPrivate = await pendingOrNew(deps.dataDir, writer);
  const newPublic = wireGuardPublicKey(nextPrivate);
  log.info({ new_public_key: newPublic }, "key rotation: submitting new public key");
  for (;;) {
    let problem: string;
    try {
      const res = await deps.cp.request({
        method: "POST",
        path: "/v1/keys/rotate",
        body: { node_id: identity.nodeId, new_public_key: newPublic },
        token: identity.identityToken,
        signal: deps.signal,
      });
      if (res.status === 200) {
        const r = rotateResponse.parse(res.body);
        if (r.node_secret_key != null) {
          decodeKey32(r.node_secret_key, "node_secret_key");
          await writer.writeFileAtomic(join(deps.dataDir, "node_secret_key"), r.node_secret_key + "\n");
          identity.nodeSecretKey = r.node_secret_key;
        }
        await deps.applyKeyAndPeers(nextPrivate, r.updated_peers);
        // Promote: the rename replaces the old private key, which is then gone.
        await rename(pendingFile(deps.dataDir), join(deps.dataDir, "private_key"));
        identity.privateKey = nextPrivate;
        identity.publicKey = newPublic;
        log.info({ public_key: newPublic, peers: r.updated_peers.length }, "key rotation complete");
        return;
      }
      if (res.status === 400 || res.status === 403) {
        await unlink(pendingFile(deps.dataDir)).catch(() => undefined);
        throw new PlexdError("failed_precondition", `key rotation refused: ${describeError(res)}; keeping the old key`);
      }
      problem = describeError(res);
    } catch (err) {
      const e = PlexdError.from(err);
      if (!["unavailable", "deadline_exceeded", "unknown"].includes(e.code)) throw e;
      problem = e.message;
    }
    const wait = deps.backoffMs();
    log.warn({ problem, retry_in_ms: wait }, "key rotation: control plane call failed; retrying with the same pending key");
    await deps.sleep(wait, deps.signal);
  }
}
