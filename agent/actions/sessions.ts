import type { KeyObject } from "node:crypto";
import { parseTimestamp } from "../../proto/lib/duration.js";
import { TrustedSigningKeys } from "../controlplane/signing-keys.js";
import type { AgentRuntime } from "../runtime.js";
import type { Logger } from "../util/log.js";
import { RevocationSet, verifySessionToken, type Verdict } from "./session-token.js";

// The running agent's side of session tokens: the signing keys it trusts now and the
// revocation set fed by session_revoked events (docs/actions.md "Session tokens").

export interface Sessions {
  verify(token: string, action: string): Promise<Verdict>;
  revoke(r: { session_id: string; revoked_at: string }): void;
}

export function openSessions(d: { runtime: () => AgentRuntime | undefined; now: () => number; log: Logger }): Sessions {
  const revocations = new RevocationSet();
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
      d.log.info({ session_id: r.session_id, revoked_at: r.revoked_at, revoked_sessions: revocations.size }, "session revoked: its token no longer runs actions");
    },
  };
}
