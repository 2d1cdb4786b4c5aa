import { stat } from "node:fs/promises";
import { PlexdError } from "../proto/lib/errors.js";
import type { Config } from "./config/schema.js";
import { describeError, type CpClient } from "./controlplane/http.js";
import { loadIdentity, moveIdentityAside, purgeDataDir, type Identity } from "./identity/store.js";
import type { PrivClient } from "./privclient/client.js";
import { buildContext } from "./system.js";
import type { Clock } from "./util/clock.js";
import type { Logger } from "./util/log.js";

// `plexd deregister [--purge] [--force]` (docs/operations.md#deregistration). The running agent does it
// through AgentService.Deregister once its loops have stopped; without a running agent the CLI
// hands it to `deregisterOffline` below. Both run `deregisterNode`: tell the control plane,
// tear the kernel state down through privhelper, then move the identity aside (or, with
// --purge, empty data_dir and remove the bootstrap token).

export interface DeregisterOptions {
  purge: boolean;
  force: boolean;
}

export interface DeregisterResult {
  nodeId: string;
  purged: boolean;
  removed: string[];
  errors: string[];
}

export interface DeregisterDeps {
  config: Config;
  cp: CpClient;
  priv: PrivClient;
  log: Logger;
  now: () => number;
  identity: Identity;
}

/**
 * Throws `unavailable` when the control plane could not be told (nothing changed then) and
 * `internal` when privhelper could not tear down — unless `force`, which goes on regardless.
 */
export async function deregisterNode(d: DeregisterDeps, opts: DeregisterOptions): Promise<DeregisterResult> {
  const { config, log, identity: id } = d;
  try {
    const res = await d.cp.request({ method: "POST", path: `/v1/nodes/${encodeURIComponent(id.nodeId)}/deregister`, token: id.identityToken });
    // 401/404: the control plane no longer knows this node; that is what deregistration wants.
    if (!(res.status >= 200 && res.status < 300) && res.status !== 401 && res.status !== 404) throw new PlexdError("unavailable", describeError(res));
  } catch (err) {
    const e = PlexdError.from(err);
    if (!opts.force) throw new PlexdError("unavailable", `control plane could not be told (${e.message}); nothing changed. Use --force to tear down locally anyway.`, { cause: err });
    log.warn({ err: e.message }, "control plane unreachable; deregistering locally (--force)");
  }
  let removed: string[] = [];
  let errors: string[] = [];
  try {
    const r = await d.priv.teardown({ purge: opts.purge }, { timeoutMs: 30_000 });
    ({ removed, errors } = r);
    log.info({ removed, errors }, "kernel state torn down");
  } catch (err) {
    const message = `privhelper teardown failed (${PlexdError.from(err).message}); run plexd-privhelper --cleanup as root`;
    if (!opts.force) throw new PlexdError("internal", message, { cause: err });
    errors = [message];
  }
  if (opts.purge) {
    await purgeDataDir(config.data_dir);
    await d.priv.removeBootstrapToken({}, { timeoutMs: 5000 }).catch(() => undefined);
  } else {
    await moveIdentityAside(config.data_dir, "deregistered", d.now());
  }
  log.info({ node_id: id.nodeId, purged: opts.purge }, "deregistered");
  return { nodeId: id.nodeId, purged: opts.purge, removed, errors };
}

/**
 * Root may deregister a node whose data_dir belongs to the agent's user: the work is done as
 * that user, so nothing in data_dir ends up owned by root and privhelper sees its usual caller.
 */
async function becomeDataDirOwner(dataDir: string): Promise<void> {
  if ((process.getuid?.() ?? -1) !== 0) return;
  const st = await stat(dataDir).catch(() => undefined);
  if (st === undefined || st.uid === 0) return;
  process.setgroups?.([st.gid]);
  process.setgid?.(st.gid);
  process.setuid?.(st.uid);
}

export async function deregisterOffline(config: Config, log: Logger, clock: Clock, env: NodeJS.ProcessEnv, opts: DeregisterOptions, json: boolean): Promise<number> {
  await becomeDataDirOwner(config.data_dir);
  const ctx = await buildContext(config, log, clock, env);
  try {
    const loaded = await loadIdentity(config.data_dir, clock.now());
    if (loaded.kind !== "loaded") {
      process.stderr.write("plexd: this node is not registered\n");
      return 4;
    }
    let r: DeregisterResult;
    try {
      r = await deregisterNode({ config, cp: ctx.cp, priv: ctx.priv, log, now: () => clock.now(), identity: loaded.identity }, opts);
    } catch (err) {
      const e = PlexdError.from(err);
      process.stderr.write(`plexd: ${e.message}\n`);
      return e.code === "unavailable" ? 7 : 1;
    }
    if (r.errors.length > 0) process.stderr.write(`plexd: teardown reported: ${r.errors.join("; ")}\n`);
    process.stdout.write(json ? JSON.stringify({ node_id: r.nodeId, purged: r.purged, removed: r.removed, errors: r.errors }) + "\n" : deregisteredText(r) + "\n");
    return 0;
  } finally {
    ctx.priv.close();
  }
}

function deregisteredText(r: { nodeId: string; purged: boolean }): string {
  return `deregistered node ${r.nodeId}${r.purged ? " (identity and state purged)" : ""}`;
}
