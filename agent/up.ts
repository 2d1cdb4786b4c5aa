import { isCancellation, PlexdError } from "../proto/lib/errors.js";
import type { Config } from "./config/schema.js";
import { startAgentNodeApi, type AgentNodeApi } from "./nodeapi/agent-api.js";
import { AgentRuntime } from "./runtime.js";
import { DesiredStateStore } from "./state/desired.js";
import { buildContext, establishIdentity, seedFromRegistration, watchPrivhelper } from "./system.js";
import type { Clock } from "./util/clock.js";
import type { Logger } from "./util/log.js";

// `plexd up`: the agent in the foreground (spec/node-agent.md §3). Returns the exit code.

export async function runUp(config: Config, log: Logger, clock: Clock, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<number> {
  const ctx = await buildContext(config, log, clock, env);
  if ((process.getuid?.() ?? 0) === 0) log.warn("running as root; plexd up is meant to run as user plexd");
  const store = await DesiredStateStore.open(config.data_dir, ctx.fence);
  store.onPersistError = (err) => log.error({ err: PlexdError.from(err).message }, "desired state could not be persisted");
  // Start-up phase 3: the node API answers from here on, before the identity exists.
  let api: AgentNodeApi | undefined;
  if (config.node_api.enabled) {
    try {
      api = await startAgentNodeApi(ctx, store);
    } catch (err) {
      const e = PlexdError.from(err);
      log.error({ code: e.code, socket: config.node_api.socket }, `node API: ${e.message}`);
      process.stderr.write(`plexd: node API: ${e.message}\n`);
      ctx.priv.close();
      return 1;
    }
  }
  let runtime: AgentRuntime | undefined;
  // `plexd deregister` run beside this agent removes the identity from data_dir: the agent
  // then stops as if told to, and writes nothing more there (DataDirFence).
  const life = AbortSignal.any([signal, ctx.fence.signal]);
  let fenceWatch: Promise<void> = Promise.resolve();
  const privWatch = watchPrivhelper(ctx, life, (restarted) => {
    // A restarted privhelper kept the kernel state; re-assert it and check for drift.
    runtime?.kernel?.trigger(restarted ? "privhelper_restarted" : "privhelper_up");
    if (restarted) runtime?.reconcile("privhelper_restarted");
  }).catch((err: unknown) => {
    if (!isCancellation(err)) log.error({ err: PlexdError.from(err).message }, "privhelper watch failed");
  });

  let code = 0;
  try {
    const ensured = await establishIdentity(ctx, life);
    seedFromRegistration(store, ensured);
    ctx.fence.arm();
    fenceWatch = ctx.fence.watch(life, (ms, s) => ctx.clock.sleep(ms, s));
    runtime = new AgentRuntime(ctx, store, ensured.identity, ensured.registered);
    api?.attach(runtime);
    await runtime.run(life);
  } catch (err) {
    const e = PlexdError.from(err);
    if (e.code !== "cancelled") {
      log.error({ code: e.code }, e.message);
      process.stderr.write(`plexd: ${e.message}\n`);
      code = 1;
    }
  }
  ctx.phase.set("stopping");
  // Stop sequence (spec §3.8): a last report sync, then the socket goes.
  await api?.close();
  await Promise.race([privWatch, new Promise((r) => setTimeout(r, 1000).unref())]);
  await store.flush();
  await fenceWatch;
  if (ctx.fence.identityRemoved) log.warn({ data_dir: config.data_dir }, "the identity was removed from data_dir while running (plexd deregister); stopped without writing there again");
  ctx.priv.close();
  log.info({ exit_code: code }, "stopped");
  return code;
}
