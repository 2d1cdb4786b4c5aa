import { PlexdError } from "../proto/lib/errors.js";
import type { Config } from "./config/schema.js";
import { describeError } from "./controlplane/http.js";
import { loadIdentity, moveIdentityAside, purgeDataDir } from "./identity/store.js";
import { buildContext } from "./system.js";
import type { Clock } from "./util/clock.js";
import type { Logger } from "./util/log.js";

// `plexd deregister [--purge] [--force]` when the agent is not running (spec/node-agent.md
// §3.8): tell the control plane, tear down the kernel state through privhelper, and move
// the identity aside (or, with --purge, remove everything in data_dir).

export interface DeregisterOptions {
  purge: boolean;
  force: boolean;
}

export async function deregisterOffline(config: Config, log: Logger, clock: Clock, env: NodeJS.ProcessEnv, opts: DeregisterOptions, json: boolean): Promise<number> {
  const ctx = await buildContext(config, log, clock, env);
  try {
    const loaded = await loadIdentity(config.data_dir, clock.now());
    if (loaded.kind !== "loaded") {
      process.stderr.write("plexd: this node is not registered\n");
      return 4;
    }
    const id = loaded.identity;
    try {
      const res = await ctx.cp.request({ method: "POST", path: `/v1/nodes/${encodeURIComponent(id.nodeId)}/deregister`, token: id.identityToken });
      // 401/404: the control plane no longer knows this node; that is what deregistration wants.
      if (!(res.status >= 200 && res.status < 300) && res.status !== 401 && res.status !== 404) throw new PlexdError("unavailable", describeError(res));
    } catch (err) {
      const e = PlexdError.from(err);
      if (!opts.force) {
        process.stderr.write(`plexd: control plane could not be told (${e.message}); nothing changed. Use --force to tear down locally anyway.\n`);
        return 7;
      }
      log.warn({ err: e.message }, "control plane unreachable; deregistering locally (--force)");
    }
    try {
      const r = await ctx.priv.teardown({ purge: opts.purge }, { timeoutMs: 30_000 });
      log.info({ removed: r.removed, errors: r.errors }, "kernel state torn down");
      if (r.errors.length > 0) process.stderr.write(`plexd: teardown reported: ${r.errors.join("; ")}\n`);
    } catch (err) {
      const e = PlexdError.from(err);
      process.stderr.write(`plexd: privhelper teardown failed (${e.message}); run plexd-privhelper --cleanup as root\n`);
      if (!opts.force) return 1;
    }
    if (opts.purge) {
      await purgeDataDir(config.data_dir);
      await ctx.priv.removeBootstrapToken({}, { timeoutMs: 5000 }).catch(() => undefined);
    } else {
      await moveIdentityAside(config.data_dir, "deregistered", clock.now());
    }
    process.stdout.write(json ? JSON.stringify({ node_id: id.nodeId, purged: opts.purge }) + "\n" : `deregistered node ${id.nodeId}${opts.purge ? " (identity and state purged)" : ""}\n`);
    return 0;
  } finally {
    ctx.priv.close();
  }
}
