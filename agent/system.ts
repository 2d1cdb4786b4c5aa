import { readFile, unlink } from "node:fs/promises";
import { arch, release } from "node:os";
import { PlexdError, isCancellation } from "../proto/lib/errors.js";
import { LiveConfig, type ConfigReloader } from "./config/live.js";
import type { Config } from "./config/schema.js";
import { Backoff } from "./controlplane/backoff.js";
import { createCpClient, type CpClient } from "./controlplane/http.js";
import { HealthRegistry } from "./health/registry.js";
import { ensureIdentity, type EnsuredIdentity, type Phase } from "./identity/ensure.js";
import { prepareDataDir } from "./identity/store.js";
import { ownChecksum } from "./integrity/binary.js";
import { connectPrivhelper, probePrivhelper, type PrivClient } from "./privclient/client.js";
import { buildCapabilities, type ActionCapabilities } from "./registration/capabilities.js";
import type { RegisterOptions } from "./registration/register.js";
import type { ResolvedToken, TokenSourceOptions } from "./registration/token.js";
import { DataDirFence } from "./state/data-dir-fence.js";
import type { DesiredStateStore } from "./state/desired.js";
import type { Clock } from "./util/clock.js";
import type { Logger } from "./util/log.js";

// Wiring of the agent's parts. Each part takes the shared AbortSignal; this file only
// builds them in the order of docs/architecture.md#lifecycle and owns nothing itself.

export interface AgentContext {
  /** The running configuration (live.current): read it when acting, so a reload reaches you. */
  readonly config: Config;
  live: LiveConfig;
  /** Present for `plexd up`: SIGHUP and AgentService.ReloadConfig go through it. */
  reloader?: ConfigReloader;
  log: Logger;
  clock: Clock;
  env: NodeJS.ProcessEnv;
  health: HealthRegistry;
  cp: CpClient;
  priv: PrivClient;
  phase: { current: Phase; set(p: Phase): void };
  startedAt: number;
  binaryChecksum: string;
  /** Every persistence write into data_dir; stops them once the identity was removed under the agent. */
  fence: DataDirFence;
  /** Built-ins and hooks to announce (set by `plexd up` once the actions feature is open). */
  actionCapabilities?: () => ActionCapabilities;
}

/** Health is data; its changes still deserve one log line each for the operator's journal. */
function logHealthChanges(health: HealthRegistry, log: Logger): void {
  let known = new Map<string, string>();
  health.subscribe((conditions) => {
    const now = new Map(conditions.map((c) => [c.code, `${c.severity}|${c.text}`]));
    for (const c of conditions) {
      if (known.get(c.code) !== now.get(c.code)) log[c.severity === "info" ? "info" : "warn"]({ health: c.code, severity: c.severity, text: c.text }, "health condition");
    }
    for (const code of known.keys()) if (!now.has(code)) log.info({ health: code }, "health condition cleared");
    known = now;
  });
}

/** Configuration problems found after parsing (data_dir) exit like config errors: code 2. */
export class StartupConfigError extends PlexdError {}

export async function buildContext(initial: Config | LiveConfig, log: Logger, clock: Clock, env: NodeJS.ProcessEnv, reloader?: ConfigReloader): Promise<AgentContext> {
  const live = initial instanceof LiveConfig ? initial : new LiveConfig(initial);
  const config = live.current;
  try {
    await prepareDataDir(config.data_dir);
  } catch (err) {
    throw new StartupConfigError("failed_precondition", PlexdError.from(err).message, { cause: err });
  }
  const ca = config.control_plane.ca_file === "" ? undefined : await readFile(config.control_plane.ca_file);
  const cp = createCpClient({
    baseUrl: config.api,
    ...(ca === undefined ? {} : { ca }),
    connectTimeoutMs: config.control_plane.connect_timeout.ms,
    requestTimeoutMs: config.control_plane.request_timeout.ms,
  });
  const phase = {
    current: "starting" as Phase,
    set(p: Phase) {
      if (this.current !== p) log.info({ phase: p }, "phase");
      this.current = p;
    },
  };
  const health = new HealthRegistry(() => clock.now());
  logHealthChanges(health, log);
  return {
    get config() {
      return live.current;
    },
    live,
    ...(reloader === undefined ? {} : { reloader }),
    log,
    clock,
    env,
    health,
    cp,
    priv: connectPrivhelper({ socketPath: config.privhelper.socket }),
    phase,
    startedAt: clock.now(),
    binaryChecksum: await ownChecksum().catch(() => "sha256:" + "0".repeat(64)),
    fence: new DataDirFence(config.data_dir),
  };
}

/**
 * Watches privhelper for as long as the agent runs. A missing helper is a health
 * condition, not a crash: the agent keeps serving cached state and retries (1 s doubling
 * to 30 s). When it (re)appears — first start, or a new pid after a restart — `onUp`
 * runs so the reconcilers re-apply the desired state.
 */
export async function watchPrivhelper(ctx: AgentContext, signal: AbortSignal, onUp: (restarted: boolean) => void = () => undefined): Promise<void> {
  const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000 });
  const healthyProbeMs = 5000;
  let lastPid: number | undefined;
  let down = true;
  while (!signal.aborted) {
    const probe = await probePrivhelper(ctx.config.privhelper.socket);
    let wait: number;
    if (probe.ok) {
      backoff.reset();
      wait = healthyProbeMs;
      const restarted = lastPid !== undefined && probe.info.pid !== lastPid;
      if (down || restarted) {
        ctx.health.clear("privhelper_unavailable");
        const caps = probe.info.capabilities;
        ctx.log.info(
          {
            privhelper_version: probe.info.version,
            privhelper_pid: probe.info.pid,
            wireguard: caps?.wireguard,
            wireguard_go: caps?.wireguardGoPath,
            nftables: caps?.nftables,
            audit: caps?.audit,
            netns: caps?.netns,
            problems: probe.info.problems,
          },
          restarted || lastPid !== undefined ? "privhelper reconnected" : "privhelper connected",
        );
        onUp(lastPid !== undefined);
      }
      lastPid = probe.info.pid;
      down = false;
    } else {
      wait = backoff.next();
      ctx.health.set("privhelper_unavailable", "critical", `privhelper unavailable at ${ctx.config.privhelper.socket}: ${probe.message}`);
      if (!down) ctx.log.warn({ socket: ctx.config.privhelper.socket, code: probe.code, err: probe.message }, "privhelper unavailable; retrying");
      else if (lastPid === undefined && backoff.attempts === 1) ctx.log.warn({ socket: ctx.config.privhelper.socket, code: probe.code, err: probe.message }, "privhelper unavailable; retrying");
      down = true;
    }
    try {
      await ctx.clock.sleep(wait, signal);
    } catch (err) {
      if (isCancellation(err)) return;
      throw err;
    }
  }
}

/** Token file removal after registration: privhelper owns /etc/plexd, so ask it first. */
async function removeTokenFile(ctx: AgentContext, path: string): Promise<void> {
  try {
    const r = await ctx.priv.removeBootstrapToken({}, { timeoutMs: 5000 });
    if (r.removed) return;
  } catch {
    // privhelper absent or too old: fall back to removing it ourselves when we may.
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}

/** Everything POST /v1/register needs except the token (first registration and re-registration). */
export function registrationOptions(ctx: AgentContext, signal: AbortSignal): Omit<RegisterOptions, "token"> {
  const { config } = ctx;
  const backoff = new Backoff();
  return {
    cp: ctx.cp,
    hostname: config.registration.hostname,
    metadata: { os: "linux", arch: arch() === "x64" ? "amd64" : arch(), kernel: release(), ...config.registration.metadata },
    capabilities: buildCapabilities(ctx.binaryChecksum, ctx.actionCapabilities?.()),
    maxRetryMs: config.registration.max_retry_duration.ms,
    backoffMs: () => backoff.next(),
    sleep: (ms, s) => ctx.clock.sleep(ms, s),
    now: () => ctx.clock.now(),
    signal,
    log: ctx.log,
  };
}

/** The bootstrap token sources of docs/architecture.md#lifecycle, from configuration. */
export function tokenSourcesFor(ctx: AgentContext, signal: AbortSignal): TokenSourceOptions {
  const { token } = ctx.config;
  return {
    file: token.file,
    envName: token.env,
    env: ctx.env,
    metadata: { enabled: token.metadata, path: token.metadata_path, timeoutMs: token.metadata_timeout.ms },
    signal,
  };
}

export async function establishIdentity(
  ctx: AgentContext,
  signal: AbortSignal,
  extra: { explicitToken?: ResolvedToken; prompt?: () => Promise<ResolvedToken> } = {},
): Promise<EnsuredIdentity> {
  return ensureIdentity({
    ...registrationOptions(ctx, signal),
    dataDir: ctx.config.data_dir,
    tokenSources: tokenSourcesFor(ctx, signal),
    ...(extra.explicitToken ? { explicitToken: extra.explicitToken } : {}),
    ...(extra.prompt ? { prompt: extra.prompt } : {}),
    tokenRecheckMs: 10_000,
    setPhase: (p) => ctx.phase.set(p),
    removeTokenFile: (path) => removeTokenFile(ctx, path),
  });
}

/** Seeds the desired-state store from the registration response. */
export function seedFromRegistration(store: DesiredStateStore, ensured: EnsuredIdentity): void {
  if (!ensured.registered) return;
  store.update((s) => {
    s.peers = Object.fromEntries(ensured.peers.map((p) => [p.id, p]));
    return ["peers"];
  });
}
