import { create } from "@bufbuild/protobuf";
import { FirewallSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Config } from "../config/schema.js";
import { Backoff } from "../controlplane/backoff.js";
import type { HealthRegistry } from "../health/registry.js";
import type { CompiledPolicy } from "../policy/compile.js";
import type { PrivClient } from "../privclient/client.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { Logger } from "../util/log.js";
import { CoalescingRunner } from "./coalesce.js";
import { firewallCorrections, meshDrift, type Correction } from "./drift.js";
import { renderTargets, type LocalNode } from "./targets.js";

// The kernel reconciler: renders the mesh and firewall targets from the desired state and
// hands each to privhelper in one declarative call. Store changes (events) trigger a fast
// converge; the reconcile cycle asks for a converge with drift detection, which first reads
// the live kernel back. Both paths share this code and run one at a time.

export interface KernelReconcilerDeps {
  priv: PrivClient;
  store: DesiredStateStore;
  config: Config;
  local: () => LocalNode;
  health: HealthRegistry;
  log: Logger;
  signal: AbortSignal;
  now: () => number;
}

export interface ConvergeResult {
  corrections: Correction[];
  meshChanged: boolean;
  firewallChanged: boolean;
  policy: CompiledPolicy;
}

export class KernelReconciler {
  readonly #d: KernelReconcilerDeps;
  readonly runner: CoalescingRunner;
  #chain: Promise<unknown> = Promise.resolve();
  #retry: NodeJS.Timeout | undefined;
  readonly #backoff = new Backoff({ initialMs: 1000, maxMs: 30_000 });
  /** The last compiled policy (for the node API: invalid rules, rendered rules). */
  lastPolicy: CompiledPolicy | undefined;
  applies = 0;

  constructor(d: KernelReconcilerDeps) {
    this.#d = d;
    this.runner = new CoalescingRunner(
      async (reasons) => {
        await this.converge(false, [...reasons].join(","));
      },
      d.signal,
      (err) => this.#scheduleRetry(err),
    );
    d.store.subscribe((slices) => {
      if (slices.has("peers") || slices.has("policies")) this.runner.trigger("desired_state");
    });
    d.signal.addEventListener("abort", () => clearTimeout(this.#retry), { once: true });
  }

  trigger(reason: string): void {
    this.runner.trigger(reason);
  }

  /** Failed applies retry on their own (1 s doubling to 30 s): privhelper may be restarting. */
  #scheduleRetry(err: PlexdError): void {
    const wait = this.#backoff.next();
    this.#d.log.warn({ err: err.message, retry_in_ms: wait }, "kernel reconcile failed; will retry");
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.runner.trigger("retry"), wait);
    this.#retry.unref();
  }

  /** One converge, serialised with any other; with `detect`, live state is read first and compared. */
  converge(detect: boolean, why: string): Promise<ConvergeResult> {
    const run = this.#chain.then(() => this.#converge(detect, why));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #converge(detect: boolean, why: string): Promise<ConvergeResult> {
    const { priv, config, log, health, signal } = this.#d;
    const local = this.#d.local();
    const targets = renderTargets(this.#d.store.state, local, config);
    this.lastPolicy = targets.policy;
    for (const bad of targets.policy.invalidRules) log.debug({ policy: bad.policy_id, index: bad.index, reason: bad.reason }, "policy rule skipped");
    const corrections: Correction[] = [];
    if (detect) {
      const idOf = new Map(Object.values(this.#d.store.state.peers).map((p) => [p.public_key, p.id]));
      const [liveMesh, liveFw] = await Promise.all([priv.readMesh({ interface: config.mesh.interface }, { signal }), priv.readFirewall({}, { signal })]);
      corrections.push(...meshDrift(targets.mesh, liveMesh, (k) => idOf.get(k), this.#d.now()));
      corrections.push(...firewallCorrections(targets.policy.firewall, liveFw));
    }
    let meshChanged = false;
    let firewallChanged = false;
    const errors: string[] = [];
    try {
      const r = (await priv.applyMesh({ spec: targets.mesh }, { signal })).result;
      if (r?.error) throw new PlexdError("internal", `ApplyMesh failed at ${r.failedStep}: ${r.error}${r.rolledBack ? " (rolled back)" : ""}`);
      meshChanged = r?.changed ?? false;
      health.clear("mesh_apply_failed");
      if (meshChanged) log.info({ why, peers: targets.mesh.peers.length, steps: r?.plan.map((s) => s.kind) }, "mesh applied");
      else log.debug({ why }, "mesh unchanged");
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      health.set("mesh_apply_failed", "critical", `mesh apply failed: ${e.message}`);
      errors.push(e.message);
    }
    try {
      const spec = create(FirewallSpecSchema, targets.policy.firewall ?? { chains: [] });
      const r = (await priv.applyFirewall({ spec }, { signal })).result;
      if (r?.error) throw new PlexdError("internal", `ApplyFirewall failed at ${r.failedStep}: ${r.error}${r.rolledBack ? " (rolled back)" : ""}`);
      firewallChanged = r?.changed ?? false;
      health.clear("firewall_apply_failed");
      if (firewallChanged) log.info({ why, rules: spec.chains.reduce((n, c) => n + c.rules.length, 0) }, "firewall applied");
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      health.set("firewall_apply_failed", "critical", `firewall apply failed: ${e.message}`);
      errors.push(e.message);
    }
    this.applies++;
    if (errors.length > 0) throw new PlexdError("unavailable", errors.join("; "));
    this.#backoff.reset();
    return { corrections, meshChanged, firewallChanged, policy: targets.policy };
  }

  async idle(): Promise<void> {
    await this.runner.idle();
    await this.#chain;
  }
}
