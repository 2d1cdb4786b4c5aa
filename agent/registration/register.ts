import { z } from "zod";
import { PlexdError } from "../../proto/lib/errors.js";
import { isMeshIp } from "../../proto/lib/net.js";
import type { CpClient } from "../controlplane/http.js";
import { describeError } from "../controlplane/http.js";
import type { Logger } from "../util/log.js";
import { generateWireGuardKeyPair, isKey32 } from "../../proto/lib/keys.js";
import type { Identity } from "../identity/store.js";
import { peerListSchema, type Peer } from "../mesh/peer.js";

// POST /v1/register (docs/mockcp.md#control-plane-api-what-agents-use, docs/architecture.md#lifecycle).

const key32 = z.string().refine(isKey32, "must be a base64 32-byte key");

const registerResponse = z.object({
  node_id: z.string().min(1),
  mesh_ip: z.string().refine(isMeshIp, "must be an IPv4 address in 10.100.0.0/16"),
  identity_token: z.string().min(1).max(512),
  signing_public_key: key32,
  node_secret_key: key32,
  peers: peerListSchema,
});

export interface RegisterOptions {
  cp: CpClient;
  token: string;
  hostname: string;
  metadata: Record<string, string>;
  capabilities: unknown;
  maxRetryMs: number;
  /** Delay before retry number `attempt` (0-based); the standard backoff with jitter. */
  backoffMs: (attempt: number) => number;
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  now: () => number;
  signal: AbortSignal;
  log: Logger;
}

export interface Registration {
  identity: Identity;
  peers: Peer[];
}

/** Final outcomes name the cause, so an operator knows whether to fix the token or the hostname. */
function finalError(status: number, detail: string): PlexdError {
  switch (status) {
    case 401:
      return new PlexdError("unauthenticated", `registration refused: the bootstrap token is invalid, expired or already used (${detail})`);
    case 409:
      return new PlexdError("already_exists", `registration refused: this hostname is already registered (${detail})`);
    case 403:
      return new PlexdError("permission_denied", `registration refused: not permitted (${detail})`);
    default:
      return new PlexdError("invalid_argument", `registration refused: the control plane rejected the request (${detail})`);
  }
}

export async function register(opts: RegisterOptions): Promise<Registration> {
  const keys = generateWireGuardKeyPair();
  const body = { token: opts.token, public_key: keys.publicKey, hostname: opts.hostname, metadata: opts.metadata, capabilities: opts.capabilities };
  const started = opts.now();
  for (let attempt = 0; ; attempt++) {
    let waitMs = opts.backoffMs(attempt);
    let problem: string;
    try {
      const res = await opts.cp.request({ method: "POST", path: "/v1/register", body, signal: opts.signal });
      if (res.status === 201 || res.status === 200) {
        const parsed = registerResponse.safeParse(res.body);
        if (!parsed.success) {
          throw new PlexdError("internal", `registration response invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
        }
        const r = parsed.data;
        return {
          identity: {
            nodeId: r.node_id,
            meshIp: r.mesh_ip,
            privateKey: keys.privateKey,
            publicKey: keys.publicKey,
            nodeSecretKey: r.node_secret_key,
            identityToken: r.identity_token,
            signingKeys: { current: r.signing_public_key, previous: null, transition_expires: null },
          },
          peers: r.peers,
        };
      }
      if ([400, 401, 403, 409].includes(res.status)) throw finalError(res.status, describeError(res));
      problem = describeError(res);
      if (res.status === 429) {
        const retryAfter = Number(res.headers["retry-after"]);
        if (Number.isFinite(retryAfter) && retryAfter >= 0) waitMs = retryAfter * 1000;
      }
    } catch (err) {
      const e = PlexdError.from(err);
      if (!["unavailable", "deadline_exceeded", "unknown"].includes(e.code)) throw e;
      problem = e.message;
    }
    if (opts.now() - started + waitMs > opts.maxRetryMs) {
      throw new PlexdError("unavailable", `registration failed: control plane unreachable for ${Math.round((opts.now() - started) / 1000)}s (${problem})`);
    }
    opts.log.warn({ attempt: attempt + 1, retry_in_ms: Math.round(waitMs), problem }, "registration attempt failed; retrying");
    await opts.sleep(waitMs, opts.signal);
  }
}
