import { isCancellation, PlexdError } from "../proto/lib/errors.js";
import type { Config } from "./config/schema.js";
import { runHeartbeatLoop, formatUptime } from "./controlplane/heartbeat.js";
import { DesiredStateStore } from "./state/desired.js";
import { buildContext, establishIdentity, seedFromRegistration, watchPrivhelper, type AgentContext } from "./system.js";
import type { Clock } from "./util/clock.js";
import type { Logger } from "./util/log.js";

// `plexd up`: the agent in the foreground (spec/node-agent.md §3). Returns the exit code.

export interface RunningAgent {
  ctx: AgentContext;
  store: DesiredStateStore;
}

export async function runUp(config: Config, log: Logger, clock: Clock, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<number> {
  const ctx = await buildContext(config, log, clock, env);
  if ((process.getuid?.() ?? 0) === 0) log.warn("running as root; plexd up is meant to run as user plexd");
  const loops: Promise<unknown>[] = [];
  const track = (name: string, p: Promise<unknown>): void => {
    loops.push(
      p.catch((err: unknown) => {
        if (!isCancellation(err)) log.error({ loop: name, err: PlexdError.from(err).message }, "loop failed");
      }),
    );
  };
  track("privhelper", watchPrivhelper(ctx, signal));
  const store = await DesiredStateStore.open(config.data_dir);
  store.onPersistError = (err) => log.error({ err: PlexdError.from(err).message }, "desired state could not be persisted");

  let ensured;
  try {
    ensured = await establishIdentity(ctx, signal);
  } catch (err) {
    const e = PlexdError.from(err);
    if (e.code === "cancelled") return shutdown(ctx, store, loops, 0);
    log.error({ code: e.code }, e.message);
    process.stderr.write(`plexd: ${e.message}\n`);
    return shutdown(ctx, store, loops, 1);
  }
  seedFromRegistration(store, ensured);
  const identity = ensured.identity;
  ctx.phase.set("connecting");

  track(
    "heartbeat",
    runHeartbeatLoop({
      cp: ctx.cp,
      nodeId: identity.nodeId,
      token: () => identity.identityToken,
      intervalMs: config.heartbeat.interval.ms,
      payload: () => ({
        status: ctx.health.healthy() ? "healthy" : "degraded",
        uptime: formatUptime(clock.now() - ctx.startedAt),
        binary_checksum: ctx.binaryChecksum,
        mesh: { interface: config.mesh.interface, peer_count: Object.keys(store.state.peers).length, listen_port: config.mesh.listen_port },
      }),
      sleep: (ms, s) => clock.sleep(ms, s),
      now: () => clock.now(),
      signal,
      log,
      onResult: (r) => (r.ok ? ctx.health.clear("heartbeat_failing") : ctx.health.set("heartbeat_failing", "warning", `heartbeat failed: ${r.error ?? ""}`)),
      onReconcileHint: () => log.debug("heartbeat asked for a reconcile"),
      onRotateKeysHint: () => log.info("heartbeat asked for a key rotation"),
      onIdentityRejected: (status) => ctx.health.set("identity_rejected", "critical", `control plane rejected this node's identity (HTTP ${status})`),
    }),
  );

  await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
  return shutdown(ctx, store, loops, 0);
}

async function shutdown(ctx: AgentContext, store: DesiredStateStore, loops: Promise<unknown>[], code: number): Promise<number> {
  ctx.phase.set("stopping");
  await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, ctx.config.node_api.shutdown_timeout.ms).unref())]);
  await store.flush();
  ctx.priv.close();
  ctx.log.info({ exit_code: code }, "stopped");
  return code;
}
