import { isCancellation, PlexdError } from "../proto/lib/errors.js";
import type { ConfigReloader, LiveConfig } from "./config/live.js";
import { openActions } from "./actions/index.js";
import { startActionsApi } from "./nodeapi/actions-api.js";
import { deregisterNode, type DeregisterOptions, type DeregisterResult } from "./deregister.js";
import { startAgentNodeApi, type AgentNodeApi } from "./nodeapi/agent-api.js";
import { AgentRuntime } from "./runtime.js";
import { DesiredStateStore } from "./state/desired.js";
import { buildContext, establishIdentity, seedFromRegistration, watchPrivhelper } from "./system.js";
import { startLogs, type LogsHandle } from "./telemetry/logs/index.js";
import type { Clock } from "./util/clock.js";
import type { Logger } from "./util/log.js";

// `plexd up`: the agent in the foreground (docs/architecture.md#lifecycle). Returns the exit code.

/** A deregistration asked for through the node API, settled by the main loop below. */
interface DeregisterRequest {
  opts: DeregisterOptions;
  settle: (r: { ok: true; result: DeregisterResult } | { ok: false; error: unknown }) => void;
}

export async function runUp(live: LiveConfig, log: Logger, clock: Clock, env: NodeJS.ProcessEnv, signal: AbortSignal, reloader?: ConfigReloader): Promise<number> {
  const ctx = await buildContext(live, log, clock, env, reloader);
  const { config } = ctx;
  if ((process.getuid?.() ?? 0) === 0) log.warn("running as root; plexd up is meant to run as user plexd");
  const store = await DesiredStateStore.open(config.data_dir, ctx.fence);
  store.onPersistError = (err) => log.error({ err: PlexdError.from(err).message }, "desired state could not be persisted");

  let runtime: AgentRuntime | undefined;
  let pending: DeregisterRequest | undefined;
  let stopRun: AbortController | undefined;
  // AgentService.Deregister (docs/operations.md#deregistration): the loops stop first, so nothing re-creates what the
  // teardown removes; the loop below does the rest and either exits or resumes.
  const deregister = (opts: DeregisterOptions): Promise<DeregisterResult> =>
    new Promise((resolve, reject) => {
      if (runtime === undefined || stopRun === undefined) return reject(new PlexdError("failed_precondition", "this node is not registered yet"));
      if (pending !== undefined) return reject(new PlexdError("aborted", "a deregistration is already running"));
      pending = { opts, settle: (r) => (r.ok ? resolve(r.result) : reject(r.error)) };
      log.info({ purge: opts.purge, force: opts.force }, "deregistration requested; stopping the loops");
      stopRun.abort();
    });

  // Start-up phase 3: the node API answers from here on, before the identity exists.
  let api: AgentNodeApi | undefined;
  if (config.node_api.enabled) {
    try {
      api = await startAgentNodeApi(ctx, store, { deregister });
    } catch (err) {
      const e = PlexdError.from(err);
      log.error({ code: e.code, socket: config.node_api.socket }, `node API: ${e.message}`);
      process.stderr.write(`plexd: node API: ${e.message}\n`);
      ctx.priv.close();
      return 1;
    }
  }
  // `plexd deregister` run beside this agent without its node API removes the identity from
  // data_dir: the agent then stops as if told to, and writes nothing more there (DataDirFence).
  const life = AbortSignal.any([signal, ctx.fence.signal]);
  const actions = await openActions(ctx, () => runtime, life);
  ctx.actionCapabilities = () => actions.manager.capabilities();
  api?.backend.attachActions(actions);
  const actionsApi = await startActionsApi(ctx, actions, life).catch((err: unknown) => {
    log.error({ socket: config.actions.socket, err: PlexdError.from(err).message }, "actions socket not served; plexd actions run is unavailable");
    return undefined;
  });
  let fenceWatch: Promise<void> = Promise.resolve();
  const privWatch = watchPrivhelper(ctx, life, (restarted) => {
    // A restarted privhelper kept the kernel state; re-assert it and check for drift.
    runtime?.kernel?.trigger(restarted ? "privhelper_restarted" : "privhelper_up");
    if (restarted) runtime?.reconcile("privhelper_restarted");
    void actions.hooks.scan(restarted ? "privhelper_restarted" : "privhelper_up");
  }).catch((err: unknown) => {
    if (!isCancellation(err)) log.error({ err: PlexdError.from(err).message }, "privhelper watch failed");
  });

  let code = 0;
  let deregistered = false;
  let logs: LogsHandle | undefined;
  try {
    const ensured = await establishIdentity(ctx, life);
    seedFromRegistration(store, ensured);
    ctx.fence.arm();
    fenceWatch = ctx.fence.watch(life, (ms, s) => ctx.clock.sleep(ms, s));
    const rt = new AgentRuntime(ctx, store, ensured.identity, ensured.registered);
    runtime = rt;
    rt.actions = { handleRequest: (id, payload) => actions.manager.handleRequest(id, payload), reconnected: () => actions.outbox.retryNow(), sessionRevoked: (r) => actions.sessions.revoke(r) };
    await actions.start();
    api?.attach(rt);
    // Log forwarding (docs/telemetry.md#logs) needs the identity it posts with; a failure leaves the mesh running.
    logs = await startLogs(ctx, () => rt.identity).catch((err: unknown) => {
      log.error({ err: PlexdError.from(err).message }, "log forwarding not started");
      return undefined;
    });
    while (!life.aborted) {
      stopRun = new AbortController();
      await rt.run(AbortSignal.any([life, stopRun.signal]));
      const req = pending;
      if (req === undefined) break;
      pending = undefined;
      if (life.aborted) {
        req.settle({ ok: false, error: new PlexdError("unavailable", "the agent is stopping") });
        break;
      }
      try {
        const result = await deregisterNode({ config: ctx.config, cp: ctx.cp, priv: ctx.priv, log, now: () => ctx.clock.now(), identity: rt.identity }, req.opts);
        deregistered = true;
        req.settle({ ok: true, result });
        break;
      } catch (err) {
        // Nothing was removed (the control plane was not told, or teardown failed without
        // --force): the node stays a member, so its loops run again.
        log.warn({ err: PlexdError.from(err).message }, "deregistration failed; resuming");
        req.settle({ ok: false, error: err });
      }
    }
  } catch (err) {
    const e = PlexdError.from(err);
    if (e.code !== "cancelled") {
      log.error({ code: e.code }, e.message);
      process.stderr.write(`plexd: ${e.message}\n`);
      code = 1;
    }
  }
  ctx.phase.set("stopping");
  await logs?.close();
  await actionsApi?.close();
  await actions.close();
  // Stop sequence (docs/architecture.md#lifecycle): a last report sync (not for a node that just left), then the socket goes.
  await api?.close({ syncReports: !deregistered });
  await Promise.race([privWatch, new Promise((r) => setTimeout(r, 1000).unref())]);
  await store.flush();
  await fenceWatch;
  if (deregistered) log.info({ node_id: runtime?.identity.nodeId }, "deregistered; stopped");
  else if (ctx.fence.identityRemoved) log.warn({ data_dir: config.data_dir }, "the identity was removed from data_dir while running (plexd deregister); stopped without writing there again");
  ctx.priv.close();
  log.info({ exit_code: code }, "stopped");
  return code;
}
