import type { KeyObject } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parseTimestamp } from "../../proto/lib/duration.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { TrustedSigningKeys } from "../controlplane/signing-keys.js";
import type { AgentRuntime } from "../runtime.js";
import type { DataWriter } from "../util/atomic.js";
import type { Logger } from "../util/log.js";
import { RevocationSet, verifySessionToken, type Verdict } from "./session-token.js";

// The running agent's side of session tokens: the signing keys it trusts now and the
// revocation set fed by session_revoked events (docs/actions.md "Session tokens"), saved in
// data_dir so that a restart does not let a revoked token through again.

export interface Sessions {
  verify(token: string, action: string): Promise<Verdict>;
  revoke(r: { session_id: string; revoked_at: string }): void;
}

/** data_dir/sessions/revoked.json: the revocation set, rewritten on every revocation. */
export const revokedFile = (dataDir: string): string => join(dataDir, "sessions", "revoked.json");

export async function openSessions(d: { runtime: () => AgentRuntime | undefined; now: () => number; log: Logger; dataDir: string; writer: DataWriter }): Promise<Sessions> {
  const file = revokedFile(d.dataDir);
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? "" : undefined));
  let saved: unknown;
  try {
    saved = text === "" ? { issued_floor: 0, entries: [] } : text === undefined ? undefined : JSON.parse(text);
  } catch {
    saved = undefined;
  }
  const revocations = RevocationSet.from(saved, d.now());
  if (!Array.isArray((saved as { entries?: unknown } | undefined)?.entries)) d.log.error({ file }, "revoked sessions unreadable: every session token issued before now is refused");
  let writes: Promise<void> = Promise.resolve();
  const keys = (): KeyObject[] => {
    const rt = d.runtime();
    if (rt === undefined) return [];
    // The event channel's set follows rotations; before it runs, the one stored with the identity.
    const set = rt.channel?.keys ?? TrustedSigningKeys.fromJSON(rt.identity.signingKeys);
    const previous = set.previousAt(d.now());
    return [set.current.key, ...(previous ? [previous.key] : [])];
  };
  return {
    verify: (token, action) => verifySessionToken(token, action, { keys, nodeId: d.runtime()?.identity.nodeId ?? "", now: d.now(), revocations }),
    revoke(r) {
      const at = parseTimestamp(r.revoked_at) ?? d.now();
      revocations.add(r.session_id, at, d.now());
      const snapshot = revocations.toJSON();
      writes = writes
        .then(async () => {
          await mkdir(dirname(file), { recursive: true, mode: 0o700 });
          await d.writer.writeJsonAtomic(file, snapshot);
        })
        .catch((err: unknown) => d.log.error({ file, err: PlexdError.from(err).message }, "revoked sessions not saved; they hold until the agent stops"));
      d.log.info({ session_id: r.session_id, revoked_at: r.revoked_at, revoked_sessions: revocations.size }, "session revoked: its token no longer runs actions");
    },
  };
}
