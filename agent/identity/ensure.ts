import { PlexdError } from "../../proto/lib/errors.js";
import type { Peer } from "../mesh/peer.js";
import { register, type RegisterOptions } from "../registration/register.js";
import { resolveBootstrapToken, type ResolvedToken, type TokenSourceOptions } from "../registration/token.js";
import { loadIdentity, saveIdentity, type Identity } from "./store.js";

export type Phase = "starting" | "awaiting_token" | "registering" | "unregistered" | "connecting" | "connected" | "offline" | "stopping";

export interface EnsureIdentityOptions extends Omit<RegisterOptions, "token"> {
  dataDir: string;
  tokenSources: TokenSourceOptions;
  /** A token given explicitly (join --token-file / --token-stdin / prompt) wins over the sources. */
  explicitToken?: ResolvedToken;
  /** Asked when no token is found anywhere; undefined means wait and re-check. */
  prompt?: () => Promise<ResolvedToken>;
  tokenRecheckMs: number;
  setPhase: (p: Phase) => void;
  /** Removes the token file after success (privhelper RemoveBootstrapToken, with a local fallback). */
  removeTokenFile: (path: string) => Promise<void>;
}

export interface EnsuredIdentity {
  identity: Identity;
  /** Peers from the registration response; empty when the identity came from disk. */
  peers: Peer[];
  registered: boolean;
}

/** Loads the stored identity, or registers once with a bootstrap token (docs/architecture.md#lifecycle). */
export async function ensureIdentity(opts: EnsureIdentityOptions): Promise<EnsuredIdentity> {
  const { log } = opts;
  const loaded = await loadIdentity(opts.dataDir, opts.now());
  if (loaded.kind === "loaded") {
    log.info({ node_id: loaded.identity.nodeId, mesh_ip: loaded.identity.meshIp }, "identity loaded; not registering again");
    return { identity: loaded.identity, peers: [], registered: false };
  }
  if (loaded.kind === "invalid") log.warn({ moved_to: loaded.movedTo, reason: loaded.reason }, "stored identity was incomplete or corrupt; moved aside");

  let token = opts.explicitToken;
  while (token === undefined) {
    token = await resolveBootstrapToken(opts.tokenSources);
    if (token !== undefined) break;
    if (opts.prompt) {
      token = await opts.prompt();
      break;
    }
    opts.setPhase("awaiting_token");
    log.warn(
      { token_file: opts.tokenSources.file, token_env: opts.tokenSources.envName, recheck_ms: opts.tokenRecheckMs },
      "no bootstrap token found; waiting for one",
    );
    await opts.sleep(opts.tokenRecheckMs, opts.signal);
  }

  opts.setPhase("registering");
  log.info({ token_source: token.source }, "registering with the control plane");
  const reg = await register({ ...opts, token: token.token });
  await saveIdentity(opts.dataDir, reg.identity);
  log.info({ node_id: reg.identity.nodeId, mesh_ip: reg.identity.meshIp, peers: reg.peers.length }, "registered");
  if (token.file !== undefined) {
    try {
      await opts.removeTokenFile(token.file);
      log.info({ file: token.file }, "bootstrap token file removed");
    } catch (err) {
      log.warn({ file: token.file, err: PlexdError.from(err).message }, "could not remove the bootstrap token file");
    }
  }
  return { identity: reg.identity, peers: reg.peers, registered: true };
}
