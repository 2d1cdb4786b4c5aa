import { PlexdError } from "../../proto/lib/errors.js";
import type { HealthRegistry } from "../health/registry.js";
import type { PrivClient } from "../privclient/client.js";
import { Backoff } from "../controlplane/backoff.js";
import { CoalescingRunner } from "../reconcile/coalesce.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { Logger } from "../util/log.js";
import { meshSpecFor, type MeshInputs } from "./spec.js";

// The mesh reconciler: whenever the peer slice changes (or the timer fires, or privhelper
// comes back), render the MeshSpec and hand it to privhelper in one ApplyMesh.

export interface MeshReconcilerDeps {
  priv: PrivClient;
  store: DesiredStateStore;
  /** Current key and address; read at every apply so a key rotation takes effect. */
  local: () => Omit<MeshInputs, "peers" | "visible">;
  visible: () => ((peerId: string) => boolean) | undefined;
  health: HealthRegistry;
  log: Logger;
  signal: AbortSignal;
  onApplied?: (changed: boolean) => void;
}

export interface MeshReconciler {
  trigger(reason: string): void;
  /** Applies now and resolves when done (key rotation waits for this). */
  applyNow(reason: string): Promise<void>;
  idle(): Promise<void>;
  readonly runner: CoalescingRunner;
}

export function startMeshReconciler(deps: MeshReconcilerDeps): MeshReconciler {
  const { log } = deps;
  let waiters: (() => void)[] = [];
  const apply = async (reasons: ReadonlySet<string>): Promise<void> => {
    const done = waiters;
    waiters = [];
    try {
      const spec = meshSpecFor({ ...deps.local(), peers: Object.values(deps.store.state.peers), ...opt(deps.visible()) });
      const res = await deps.priv.applyMesh({ spec }, { signal: deps.signal });
      const r = res.result;
      if (r?.error) throw new PlexdError("internal", `ApplyMesh failed at ${r.failedStep}: ${r.error}${r.rolledBack ? " (rolled back)" : ""}`);
      deps.health.clear("mesh_apply_failed");
      backoff.reset();
      if (r?.changed) log.info({ reasons: [...reasons], peers: spec.peers?.length ?? 0, steps: r.plan.map((s) => s.kind) }, "mesh applied");
      else log.debug({ reasons: [...reasons] }, "mesh unchanged");
      deps.onApplied?.(r?.changed ?? false);
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code !== "cancelled") deps.health.set("mesh_apply_failed", "critical", `mesh apply failed: ${e.message}`);
      throw e;
    } finally {
      for (const w of done) w();
    }
  };
  // A failed apply retries on its own (1 s doubling to 30 s) instead of waiting for the
  // next timer tick: privhelper may just be restarting.
  const backoff = new Backoff({ initialMs: 1000, maxMs: 30_000 });
  let retry: NodeJS.Timeout | undefined;
  const runner = new CoalescingRunner(apply, deps.signal, (err) => {
    const wait = backoff.next();
    log.warn({ err: err.message, retry_in_ms: wait }, "mesh reconcile failed; will retry");
    clearTimeout(retry);
    retry = setTimeout(() => runner.trigger("retry"), wait);
    retry.unref();
  });
  deps.signal.addEventListener("abort", () => clearTimeout(retry), { once: true });
  deps.store.subscribe((slices) => {
    if (slices.has("peers") || slices.has("policies")) runner.trigger("desired_state");
  });
  return {
    runner,
    trigger: (reason) => runner.trigger(reason),
    applyNow: (reason) =>
      new Promise<void>((resolve) => {
        waiters.push(resolve);
        runner.trigger(reason);
      }),
    idle: () => runner.idle(),
  };
}

function opt(visible: ((id: string) => boolean) | undefined): { visible?: (id: string) => boolean } {
  return visible === undefined ? {} : { visible };
}
