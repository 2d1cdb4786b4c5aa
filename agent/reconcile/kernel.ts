import { create } from "@bufbuild/protobuf";
import { FirewallSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Config } from "../config/schema.js";
import { Backoff } from "../controlplane/backoff.js";
import type { HealthRegistry } from "../health/registry.js";
import { wireGuardPublicKey } from "../../proto/lib/keys.js";
import type { CompiledPolicy } from "../policy/compile.js";
import type { FirewallChainPlain } from "../policy/types.js";
import { withBridgeChains } from "../bridge/kernel-parts.js";
import type { PrivClient } from "../privclient/client.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { Logger } from "../util/log.js";
import { CoalescingRunner } from "./coalesce.js";
import { firewallCorrections, meshDrift, type Correction } from "./drift.js";
import type { QuarantineListener } from "../mesh/admission.js";
import { TargetRenderer, type EndpointResolver, type LocalNode } from "./targets.js";

// The kernel reconciler: renders the mesh and firewall targets from the desired state and
// hands each to privhelper in one declarative call. Store changes (events) trigger a fast
// converge; the reconcile cycle asks for a converge with drift detection, which first reads
// the live kernel back. Both paths share this code and run one at a time.

/**
 * privhelper's default deadline is 10 s; a first apply of 10,000 rules and 1,000 peers on a
 * loaded two-core machine can take longer, and a deadline hit mid-apply only means a retry.
 */
const applyDeadlineMs = 60_000;

export interface KernelReconcilerDeps {
  priv: PrivClient;
  store: DesiredStateStore;
  config: Config;
  local: () => LocalNode;
  health: HealthRegistry;
  log: Logger;
  signal: AbortSignal;
  now: () => number;
  /** Addresses of DNS-name endpoints (mesh/endpoints.ts); without it such peers get no endpoint. */
  resolve?: EndpointResolver;
  /** mode: bridge: the bridge's chains (agent/bridge/manager.ts), merged into every FirewallSpec; undefined until the bridge first synced. */
  bridgeChains?: () => FirewallChainPlain[] | undefined;
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
  readonly #targets: TargetRenderer;
  /** Peers changed since the last converge; undefined = any may have (start, full pull). */
  #changed: Set<string> | undefined = undefined;
  /** Target versions privhelper last confirmed; an unchanged target is not sent again. */
  #appliedMesh = -1;
  /** The mesh version privhelper holds as the base for a delta; undefined = send it whole. */
  #privBase: number | undefined;
  #appliedFirewall = -1;
  /** The bridge chains privhelper last confirmed (JSON), beside #appliedFirewall. */
  #appliedBridge = "";
  #meshReady!: () => void;
  /** Resolves once the mesh device holds a target: NAT discovery probes from its port. */
  readonly meshReady = new Promise<void>((resolve) => (this.#meshReady = resolve));

  constructor(d: KernelReconcilerDeps) {
    this.#d = d;
    this.#targets = new TargetRenderer(d.resolve);
    // Each peer's quarantine is logged when it starts, changes reason or ends: once, not per cycle.
    this.#targets.admission.subscribe((id, reason) => {
      if (reason !== undefined) d.log.warn({ peer_id: id, reason }, "peer quarantined: kept out of the kernel");
      else d.log.info({ peer_id: id }, "peer left quarantine");
      const n = this.#targets.admission.quarantined().size;
      if (n === 0) d.health.clear("peers_quarantined");
      else d.health.set("peers_quarantined", "warning", `${n} peer${n === 1 ? "" : "s"} from the control plane refused and kept out of the kernel (plexd peers --all shows why)`);
    });
    this.runner = new CoalescingRunner(
      async (reasons) => {
        await this.converge(false, [...reasons].join(","));
      },
      d.signal,
      (err) => this.#scheduleRetry(err),
    );
    d.store.subscribe((slices, _state, peerIds) => {
      if (slices.has("peers")) {
        if (peerIds === undefined) this.#changed = undefined;
        else if (this.#changed !== undefined) for (const id of peerIds) this.#changed.add(id);
      }
      if (slices.has("peers") || slices.has("policies")) this.runner.trigger("desired_state");
    });
    d.signal.addEventListener("abort", () => clearTimeout(this.#retry), { once: true });
  }

  /**
   * A converge that sends both targets whatever was sent before (start-up, privhelper back):
   * the kernel may no longer hold what was last applied.
   */
  trigger(reason: string): void {
    this.#appliedMesh = -1;
    this.#privBase = undefined;
    this.#appliedFirewall = -1;
    this.runner.trigger(reason);
  }

  /**
   * mesh.reconnect: the interface is deleted and created again with the whole peer set, and the
   * firewall applied again. Resolves with the number of peers configured.
   */
  async reconnect(): Promise<number> {
    this.#appliedMesh = -1;
    this.#privBase = undefined;
    this.#appliedFirewall = -1;
    this.#recreate = true;
    await this.converge(false, "mesh.reconnect");
    return this.#targets.mesh.size;
  }

  #recreate = false;

  /** Peers admission keeps out of the kernel, with the reason. */
  quarantined(): Map<string, string> {
    return this.#targets.admission.quarantined();
  }

  /** Called when a peer enters quarantine, changes its reason or leaves it. */
  onQuarantine(listener: QuarantineListener): () => void {
    return this.#targets.admission.subscribe(listener);
  }

  /** Peers to decide again although the store did not change them (a DNS name moved). */
  recheckPeers(ids: Iterable<string>): void {
    if (this.#changed !== undefined) for (const id of ids) this.#changed.add(id);
    this.runner.trigger("endpoint_resolved");
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
    const changed = this.#changed;
    this.#changed = new Set();
    let policy: CompiledPolicy;
    try {
      policy = this.#targets.render(this.#d.store.state, local, config, changed);
    } catch (err) {
      this.#changed = undefined; // start over from the whole state next time
      throw err;
    }
    const mesh = this.#targets.mesh;
    const meshVersion = mesh.version;
    const firewallVersion = this.#targets.firewallVersion;
    const bridge = this.#d.bridgeChains ? this.#d.bridgeChains() : [];
    // Until the bridge has synced once, the firewall is neither read nor applied: applying it
    // without the bridge's chains would drop, for a moment, those a restart left in place.
    const bridgeReady = bridge !== undefined;
    const extra = bridge ?? [];
    const bridgeKey = JSON.stringify(extra);
    // A target privhelper has not confirmed yet differs from the kernel by its pending change, which is no drift.
    const firewallPending = this.#appliedFirewall !== -1 && (firewallVersion !== this.#appliedFirewall || bridgeKey !== this.#appliedBridge);
    // The policy's own object stays as compiled (node API); the kernel gets it with the bridge's chains.
    if (extra.length > 0) policy = { ...policy, firewall: { chains: withBridgeChains(policy.firewall?.chains ?? [], extra) } };
    this.lastPolicy = policy;
    if (changed === undefined || firewallVersion !== this.#appliedFirewall) {
      for (const bad of policy.invalidRules) log.debug({ policy: bad.policy_id, index: bad.index, reason: bad.reason }, "policy rule skipped");
    }
    const corrections: Correction[] = [];
    // With the live state just read and found equal, the apply would be a no-op: skip it
    // (at 10,000 rules privhelper would read the table a second time only to say so).
    // Without a read-back, a target privhelper already confirmed is not sent again: the
    // reconcile cycle (detect) is what finds and corrects drift, on its interval.
    let meshInSync = !detect && meshVersion === this.#appliedMesh;
    let firewallInSync = !bridgeReady || (!detect && firewallVersion === this.#appliedFirewall && bridgeKey === this.#appliedBridge);
    if (detect) {
      // The admitted holder of a key first: a quarantined duplicate must not be named for it.
      const byKey = new Map(Object.values(this.#d.store.state.peers).map((p) => [p.public_key, p.id]));
      const idOf = { get: (k: string) => this.#targets.admission.ownerOfKey(k) ?? byKey.get(k) };
      const [liveMesh, liveFw] = await Promise.all([priv.readMesh({ interface: config.mesh.interface }, { signal, timeoutMs: applyDeadlineMs }), priv.readFirewall({}, { signal, timeoutMs: applyDeadlineMs })]);
      const spec = mesh.spec();
      const meshFix = meshDrift(spec, liveMesh, (k) => idOf.get(k), this.#d.now());
      const fwFix = bridgeReady ? firewallCorrections(policy.firewall, liveFw) : [];
      corrections.push(...meshFix, ...(firewallPending ? [] : fwFix));
      meshInSync = meshFix.length === 0 && liveMesh.listenPort === spec.listenPort && liveMesh.publicKey === this.#publicKeyOf(local.privateKey);
      firewallInSync = !bridgeReady || fwFix.length === 0;
      if (meshInSync) {
        this.#appliedMesh = meshVersion;
        this.#meshReady();
      }
      if (firewallInSync && bridgeReady) [this.#appliedFirewall, this.#appliedBridge] = [firewallVersion, bridgeKey];
    }
    let meshChanged = false;
    let firewallChanged = false;
    const errors: string[] = [];
    if (!meshInSync) try {
      if (detect) this.#privBase = undefined; // drift was found: state the whole target
      const r = await this.#sendMesh(signal);
      if (r?.error) throw new PlexdError("internal", `ApplyMesh failed at ${r.failedStep}: ${r.error}${r.rolledBack ? " (rolled back)" : ""}`);
      meshChanged = r?.changed ?? false;
      this.#appliedMesh = meshVersion;
      this.#meshReady();
      health.clear("mesh_apply_failed");
      if (meshChanged) log.info({ why, peers: mesh.size, steps: r?.plan.length }, "mesh applied");
      else log.debug({ why }, "mesh unchanged");
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      health.set("mesh_apply_failed", "critical", `mesh apply failed: ${e.message}`);
      errors.push(e.message);
    }
    if (!firewallInSync) try {
      const spec = create(FirewallSpecSchema, policy.firewall ?? { chains: [] });
      const r = (await priv.applyFirewall({ spec }, { signal, timeoutMs: applyDeadlineMs })).result;
      if (r?.error) throw new PlexdError("internal", `ApplyFirewall failed at ${r.failedStep}: ${r.error}${r.rolledBack ? " (rolled back)" : ""}`);
      firewallChanged = r?.changed ?? false;
      [this.#appliedFirewall, this.#appliedBridge] = [firewallVersion, bridgeKey];
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
    return { corrections, meshChanged, firewallChanged, policy };
  }

  /**
   * ApplyMesh with what changed since the version privhelper holds, or the whole target when
   * it holds none (start, restart, a failure); a delta it no longer has a base for is sent
   * again whole at once.
   */
  async #sendMesh(signal: AbortSignal) {
    const { priv } = this.#d;
    const mesh = this.#targets.mesh;
    const version = mesh.version;
    const opts = { signal, timeoutMs: applyDeadlineMs };
    let res: Awaited<ReturnType<PrivClient["applyMeshEncoded"]>> | undefined;
    try {
      if (this.#privBase !== undefined) {
        res = await priv.applyMeshEncoded(mesh.deltaBytes(this.#privBase), opts).catch((err: unknown) => {
          if (PlexdError.from(err).code === "failed_precondition") return undefined;
          throw err;
        });
      }
      // Protobuf fields may be appended to an encoded message: field 3 (recreate) = true.
      const recreate = this.#recreate;
      this.#recreate = false;
      res ??= await priv.applyMeshEncoded(recreate ? join2(mesh.requestBytes(), recreateField) : mesh.requestBytes(), opts);
    } catch (err) {
      this.#privBase = undefined;
      throw err;
    }
    if (res.result?.error) this.#privBase = undefined;
    else {
      this.#privBase = version;
      mesh.confirmed(version);
    }
    return res.result;
  }

  #keyCache: [string, string] | undefined;
  #publicKeyOf(privateKey: string): string {
    if (this.#keyCache?.[0] !== privateKey) this.#keyCache = [privateKey, wireGuardPublicKey(privateKey)];
    return this.#keyCache[1];
  }

  async idle(): Promise<void> {
    await this.runner.idle();
    await this.#chain;
  }
}

/** ApplyMeshRequest.recreate = true (field 3, varint), appended to an encoded request. */
const recreateField = Uint8Array.of(0x18, 0x01);

function join2(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
