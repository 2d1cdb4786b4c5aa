import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { PlexdError } from "../../proto/lib/errors.js";
import type { AgentRuntime } from "../runtime.js";
import type { AgentContext } from "../system.js";
import { HookSet } from "../hooks/hook-set.js";
import { AckedIds } from "./acked-ids.js";
import type { BuiltinHost } from "./builtins.js";
import { ActionManager } from "./manager.js";
import { ResultOutbox, sendAck } from "./outbox.js";
import { PathTestResponder, runPathTest } from "./path-test.js";
import { ownChecksum } from "../integrity/binary.js";
import { artifactChanged, installRelease } from "./upgrade.js";
import { openSessions, type Sessions } from "./sessions.js";

// The actions feature of a running agent, assembled: executed-id memory, result outbox and the
// manager, with the built-ins' view of the agent. `plexd up` opens it before registration (the
// registration body announces the actions) and closes it after the loops stopped.

export interface Actions {
  readonly manager: ActionManager;
  readonly outbox: ResultOutbox;
  readonly hooks: HookSet;
  /** Session tokens of local runs and their revocation set. */
  readonly sessions: Sessions;
  /** A local run with neither a session token nor --local: reported to the control plane as a refused result. */
  reportDirectAccess(action: string, uid: number): void;
  /** Once the identity is known: results left pending by an earlier run go out. */
  start(): Promise<void>;
  /** Shutdown: drain running executions (results stay on disk), stop delivery, persist the memory. */
  close(): Promise<void>;
}

/** Opens the memory and scans the hooks (their checksums go into the registration). */
export async function openActions(ctx: AgentContext, runtime: () => AgentRuntime | undefined, signal: AbortSignal): Promise<Actions> {
  const log = ctx.log.child({ component: "actions" });
  const acked = await AckedIds.open(ctx.config.data_dir, () => ctx.clock.now(), log, ctx.fence);
  const identity = (): { nodeId: string; token: string } => {
    const id = runtime()?.identity;
    if (id === undefined) throw new PlexdError("unavailable", "no identity yet");
    return { nodeId: id.nodeId, token: id.identityToken };
  };
  const transport = { cp: ctx.cp, identity, log, sleep: (ms: number, s: AbortSignal) => ctx.clock.sleep(ms, s) };
  const outbox = new ResultOutbox({ ...transport, dataDir: ctx.config.data_dir, writer: ctx.fence });
  const stopAcks = new AbortController();
  const host: BuiltinHost = {
    nodeId: () => runtime()?.identity.nodeId ?? "",
    meshIp: () => runtime()?.identity.meshIp ?? "",
    peerCount: () => Object.keys(runtime()?.store.state.peers ?? {}).length,
    uptimeMs: () => ctx.clock.now() - ctx.startedAt,
    health: () => ctx.health.list(),
    lastReconcile: () => runtime()?.lastReconcile,
    async peers(signal) {
      const live = await ctx.priv.readMesh({ interface: ctx.config.mesh.interface }, { signal, timeoutMs: 5000 });
      const byKey = new Map(live.peers.map((p) => [p.publicKey, p]));
      return Object.values(runtime()?.store.state.peers ?? {}).map((p) => {
        const hs = byKey.get(p.public_key)?.lastHandshake;
        const at = hs === undefined ? 0 : Number(hs.seconds) * 1000;
        return { peer_id: p.id, handshake_age_s: at > 0 ? Math.round((ctx.clock.now() - at) / 1000) : null };
      });
    },
    config: () => ({ config: ctx.config, sources: ctx.reloader?.sources ?? {} }),
    pathTest: (peerIp, o, signal) => {
      const self = runtime()?.identity.meshIp;
      if (self === undefined) throw new PlexdError("unavailable", "no mesh address yet");
      return runPathTest({ meshIp: self, peerIp, port: ctx.config.actions.path_test.port, size: 1200, signal, ...o });
    },
    async serviceControl(action, checkOnly) {
      await ctx.priv.serviceControl({ action, checkOnly }, { timeoutMs: 30_000 });
    },
    async upgrade(version, checksum, signal) {
      const r = await installRelease({ cp: ctx.cp, priv: ctx.priv, dataDir: ctx.config.data_dir, connectTimeoutMs: ctx.config.control_plane.connect_timeout.ms, identity }, version, checksum, signal);
      const changed = await artifactChanged({ current: () => ctx.binaryChecksum, hash: ownChecksum, set: (c) => (ctx.binaryChecksum = c), announce: () => runtime()?.capabilitiesChanged() });
      if (changed) log.info({ checksum: ctx.binaryChecksum }, "the agent's artifact changed with the upgrade; capabilities announced again");
      return r;
    },
    maxOutputBytes: () => ctx.config.actions.max_output_bytes,
    journal: (args, signal) =>
      new Promise((resolve) => {
        execFile("journalctl", [...args], { signal, maxBuffer: 64 * 1024 * 1024, env: { LC_ALL: "C", PATH: "/usr/bin:/bin" } }, (err, stdout, stderr) => {
          const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : 127;
          resolve({ exitCode: code, stdout, stderr: err !== null && stderr === "" ? err.message : stderr });
        });
      }),
    peerMeshIp: (peerId) => runtime()?.store.state.peers[peerId]?.mesh_ip,
    async ping(address, count, signal) {
      const r = (await ctx.priv.pingPeers({ addresses: [address], count }, { signal, timeoutMs: 60_000 })).results[0];
      return { sent: r?.sent ?? 0, received: r?.received ?? 0, min: r?.rttMinMs ?? 0, avg: r?.rttAvgMs ?? 0, max: r?.rttMaxMs ?? 0 };
    },
    async traceroute(address, maxHops, signal) {
      const r = await ctx.priv.traceroute({ address, maxHops }, { signal, timeoutMs: 150_000 });
      return { hops: r.hops.map((h) => ({ hop: h.hop, address: h.address, rtt_ms: h.rttMs })), reached: r.reached };
    },
    async reconnectMesh() {
      const rt = runtime();
      if (rt?.kernel === undefined) throw new PlexdError("unavailable", "the mesh is not set up yet");
      const peers = await rt.kernel.reconnect();
      rt.reconcile("mesh.reconnect");
      return peers;
    },
    reloadConfig() {
      if (ctx.reloader === undefined) throw new PlexdError("failed_precondition", "this agent cannot reload its configuration");
      const plan = ctx.reloader.reload("action service.reload_config");
      return { applied: plan.applied, restart_required: plan.restartRequired };
    },
  };
  const hooks = new HookSet({
    config: () => ctx.config,
    priv: ctx.priv,
    log: ctx.log.child({ component: "hooks" }),
    nodeId: () => runtime()?.identity.nodeId ?? "",
    async reportViolation(v) {
      const { nodeId, token } = identity();
      const res = await ctx.cp.request({ method: "POST", path: `/v1/nodes/${encodeURIComponent(nodeId)}/integrity/violations`, token, body: v, signal: AbortSignal.timeout(30_000) });
      if (res.status < 200 || res.status >= 300) log.warn({ status: res.status }, "integrity violation not delivered");
    },
    onChange: () => runtime()?.capabilitiesChanged(),
  });
  await hooks.scan("startup");
  hooks.watch(signal, (fn) => ctx.live.subscribe(fn));
  const manager = new ActionManager({
    config: () => ctx.config,
    acked,
    outbox,
    ack: (body) => sendAck(transport, body, stopAcks.signal),
    host,
    hooks,
    log,
    now: () => ctx.clock.now(),
  });
  const responder = new PathTestResponder(() => {
    const c = ctx.config.actions.path_test;
    return { maxPacketsPerSecond: c.max_packets_per_second, maxBytesPerSecond: c.max_bytes_per_second, maxDurationMs: c.max_duration.ms };
  }, log);
  const sessions = await openSessions({ runtime, now: () => ctx.clock.now(), log, dataDir: ctx.config.data_dir, writer: ctx.fence });
  const stopResponder = new AbortController();
  let directReports: number[] = [];
  /** The mesh IP is on the interface once the first apply is done: until then, bind again every 2 s. */
  const listen = async (): Promise<void> => {
    while (!stopResponder.signal.aborted) {
      const ip = runtime()?.identity.meshIp;
      if (ip !== undefined && ip !== "") {
        try {
          await responder.listen(ip, ctx.config.actions.path_test.port);
          return;
        } catch (err) {
          log.debug({ err: PlexdError.from(err).message }, "path test responder not bound yet");
        }
      }
      await ctx.clock.sleep(2000, stopResponder.signal).catch(() => undefined);
    }
  };
  return {
    manager,
    outbox,
    hooks,
    sessions,
    reportDirectAccess(action, uid) {
      // At most 10 reports a minute: a local user cannot flood the control plane with them.
      const now = ctx.clock.now();
      directReports = directReports.filter((t) => now - t < 60_000);
      if (directReports.length >= 10) return;
      directReports.push(now);
      const result = {
        execution_id: `local_${randomUUID()}`,
        status: "error" as const,
        exit_code: -1,
        stdout: "",
        stderr: `unauthorized: ${action.slice(0, 200)} requested by uid ${uid} without a session token (direct access); refused, nothing ran\n`,
        duration: "0.00s",
        finished_at: new Date(now).toISOString(),
        triggered_by: { type: "direct_access", session_id: "", user_id: String(uid), email: "" },
      };
      outbox.add(result, Promise.resolve()).catch((err: unknown) => log.error({ err: PlexdError.from(err).message }, "direct-access report could not be persisted"));
    },
    start: async () => {
      if (ctx.config.actions.enabled && ctx.config.actions.path_test.enabled) void listen();
      await outbox.resume();
    },
    async close() {
      stopResponder.abort();
      responder.close();
      await manager.drain();
      stopAcks.abort();
      await outbox.close();
      await acked.close().catch((err: unknown) => log.error({ err: PlexdError.from(err).message }, "executed-id memory not written at shutdown"));
    },
  };
}
