// Runs the bridge's services (docs/bridge.md#overview). Each service starts, reconfigures and
// stops on its own: one that throws is marked failed and the others go on. After the services,
// their kernel parts are merged: the bridge's WireGuard devices go to privhelper's ApplyMesh
// (devices.ts), the routes and forwarding to ApplyRoutes here,
// the firewall rules join the kernel reconciler's FirewallSpec (bridgeChains). Mesh → routes →
// firewall is the order of the kernel calls. An agent stop closes the services' own resources
// and leaves the kernel as it is; teardown() removes the bridge's kernel state as well.
import { create } from "@bufbuild/protobuf";
import { RouteSpecSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Config } from "../config/load.js";
import type { HealthRegistry } from "../health/registry.js";
import type { FirewallChainPlain } from "../policy/types.js";
import type { PrivClient } from "../privclient/client.js";
import { CoalescingRunner } from "../reconcile/coalesce.js";
import type { DesiredStateStore } from "../state/desired.js";
import type { Logger } from "../util/log.js";
import { join } from "node:path";
import { BridgeDevices, type BridgeDeviceStatus } from "./devices.js";
import { bridgeChains, mergeRoutes, withoutDevices } from "./kernel-parts.js";
import type { BridgeInput, BridgeService, BridgeServiceName, BridgeServiceStatus } from "./service.js";

export interface BridgeManagerDeps {
  priv: Pick<PrivClient, "applyRoutes" | "applyMesh">;
  config: () => Config;
  store: Pick<DesiredStateStore, "state" | "subscribe">;
  health: Pick<HealthRegistry, "set" | "clear">;
  log: Logger;
  signal: AbortSignal;
  /** The bridge's firewall part changed: the kernel reconciler applies the FirewallSpec again. */
  onFirewallChange: () => void;
}

export interface BridgeStatus {
  enabled: boolean;
  services: (BridgeServiceStatus & { error?: string })[];
  routes: { count: number; forwarding: string[]; error?: string };
  /** The bridge's own WireGuard devices (user access, site-to-site). */
  devices: BridgeDeviceStatus[];
}

const applyDeadlineMs = 60_000;

export class BridgeManager {
  readonly #d: BridgeManagerDeps;
  readonly #services: BridgeService[] = [];
  readonly #running = new Set<BridgeServiceName>();
  readonly #errors = new Map<BridgeServiceName, string>();
  #routes: { count: number; forwarding: string[]; error?: string } = { count: 0, forwarding: [] };
  #chainsKey = "[]";
  /** Devices whose last ApplyMesh failed: their routes, forwarding and rules are left out. */
  #failedDevices = new Set<string>();
  readonly #devices: BridgeDevices;
  readonly runner: CoalescingRunner;

  constructor(d: BridgeManagerDeps) {
    this.#d = d;
    this.#devices = new BridgeDevices({ priv: d.priv, recordFile: join(d.config().data_dir, "bridge-devices.json"), log: d.log, signal: d.signal });
    this.runner = new CoalescingRunner((reasons) => this.#sync([...reasons].join(",")), d.signal, (err) => d.log.warn({ err: err.message }, "bridge sync failed; the next trigger retries"));
    d.store.subscribe((slices) => {
      if (slices.has("bridge")) this.runner.trigger("desired_state");
    });
  }

  register(service: BridgeService): void {
    if (this.#services.some((s) => s.name === service.name)) throw new PlexdError("internal", `bridge service ${service.name} registered twice`);
    this.#services.push(service);
  }

  /** Queues a sync (coalesced). */
  trigger(why: string): void {
    this.runner.trigger(why);
  }

  /** One sync now, serialised with triggered ones (tests, start-up). */
  async sync(why: string): Promise<void> {
    this.runner.trigger(why);
    await this.idle();
  }

  idle(): Promise<void> {
    return this.runner.idle();
  }

  input(): BridgeInput {
    return { config: this.#d.config(), desired: this.#d.store.state.bridge ?? {} };
  }

  async #sync(why: string): Promise<void> {
    const input = this.input();
    await Promise.all(this.#services.map((s) => this.#syncOne(s, input)));
    this.#failedDevices = await this.#devices.apply(this.#runningParts().flatMap((p) => p.interfaces ?? []));
    await this.#applyRoutes();
    const key = JSON.stringify(this.bridgeChains());
    if (key !== this.#chainsKey) {
      this.#chainsKey = key;
      this.#d.onFirewallChange();
    }
    this.#d.log.debug({ why, running: [...this.#running] }, "bridge synced");
  }

  async #syncOne(s: BridgeService, input: BridgeInput): Promise<void> {
    const { log, health } = this.#d;
    try {
      if (s.wanted(input)) {
        const first = !this.#running.has(s.name);
        await s.apply(input);
        this.#running.add(s.name);
        if (first) log.info({ service: s.name }, "bridge service started");
      } else if (this.#running.has(s.name)) {
        this.#running.delete(s.name);
        await s.stop();
        log.info({ service: s.name }, "bridge service stopped");
      }
      if (this.#errors.delete(s.name)) health.clear(`bridge_${s.name}_failed`);
    } catch (err) {
      const e = PlexdError.from(err);
      this.#errors.set(s.name, e.message);
      health.set(`bridge_${s.name}_failed`, "warning", `bridge ${s.name}: ${e.message}`);
      log.warn({ service: s.name, err: e.message }, "bridge service failed; the others go on");
    }
  }

  /** Kernel parts of the services that run (a failed one keeps what it last had: its state is unknown). */
  #runningParts() {
    return this.#services.filter((s) => this.#running.has(s.name) && s.kernel).map((s) => s.kernel!());
  }

  /** What goes to ApplyRoutes and the FirewallSpec: without devices whose ApplyMesh failed. */
  #parts() {
    return this.#runningParts().map((p) => withoutDevices(p, this.#failedDevices));
  }

  async #applyRoutes(parts = this.#parts()): Promise<void> {
    const spec = mergeRoutes(parts);
    try {
      const r = (await this.#d.priv.applyRoutes({ spec: create(RouteSpecSchema, spec) }, { signal: this.#d.signal, timeoutMs: applyDeadlineMs })).result;
      if (r?.error) throw new PlexdError("internal", `ApplyRoutes failed at ${r.failedStep}: ${r.error}${r.rolledBack ? " (rolled back)" : ""}`);
      if (r?.changed) this.#d.log.info({ routes: spec.routes.length, forwarding: spec.forwarding, steps: r.plan.map((p) => `${p.kind} ${p.detail}`) }, "bridge routes applied");
      this.#routes = { count: spec.routes.length, forwarding: spec.forwarding };
      this.#d.health.clear("bridge_routes_failed");
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      this.#routes = { ...this.#routes, error: e.message };
      this.#d.health.set("bridge_routes_failed", "warning", `bridge routes: ${e.message}`);
      this.#d.log.warn({ err: e.message }, "bridge routes apply failed; the previous routes stay");
    }
  }

  /** The bridge's chains for the kernel reconciler's FirewallSpec. */
  bridgeChains(): FirewallChainPlain[] {
    return bridgeChains(this.#parts());
  }

  status(): BridgeStatus {
    return {
      enabled: true,
      services: this.#services.map((s) => {
        const e = this.#errors.get(s.name);
        return { ...s.status(), ...(e !== undefined ? { error: e } : {}) };
      }),
      routes: this.#routes,
      devices: this.#devices.status(),
    };
  }

  /** The heartbeat's `bridge` block and the services' own top-level blocks. */
  heartbeat(): Record<string, unknown> {
    const bridge: Record<string, unknown> = { enabled: true };
    const blocks: Record<string, unknown> = {};
    for (const st of this.status().services) {
      Object.assign(bridge, st.bridgeHeartbeat ?? {});
      if (!st.heartbeat) continue;
      if (st.heartbeatInBridge) Object.assign(bridge, st.heartbeat);
      else blocks[st.name] = st.heartbeat;
    }
    return { bridge, ...blocks };
  }

  /** The `bridge` member of the capabilities. */
  capabilities(): Record<string, string> {
    const caps: Record<string, string> = { enabled: "true" };
    for (const st of this.status().services) Object.assign(caps, st.capabilities ?? {});
    return caps;
  }

  /** Agent stop: the services' own resources close; kernel state stays (a restart recreates the rest). */
  async stopServices(): Promise<void> {
    const running = this.#services.filter((s) => this.#running.has(s.name));
    await Promise.all(running.map((s) => s.stop().catch((err: unknown) => this.#d.log.warn({ service: s.name, err: PlexdError.from(err).message }, "bridge service stop failed"))));
    this.#running.clear();
  }

  /** Mode change or deregistration: services stop and their devices, routes, forwarding and rules leave the kernel. */
  async teardown(): Promise<void> {
    await this.stopServices();
    await this.#applyRoutes([]);
    this.#failedDevices = await this.#devices.apply([]);
    this.#chainsKey = "[]";
    this.#d.onFirewallChange();
  }
}
