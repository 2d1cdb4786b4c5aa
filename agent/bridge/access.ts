// Access routing (docs/bridge.md#access-routing): mesh nodes reach the subnets behind
// bridge.access_interface. Routes per subnet via that interface and forwarding on it and on the
// mesh interface (per interface, never the global switch), and with enable_nat the masquerade
// rule `oifname <access_interface> masquerade`. Nothing runs in the agent: the whole service is
// its kernel part, which the manager hands to privhelper.
import { parseCidr } from "../../proto/lib/net.js";
import type { BridgeInput, BridgeKernelPart, BridgeService, BridgeServiceStatus } from "./service.js";

export interface AccessRoutingConfig { accessInterface: string; subnets: string[]; enableNat: boolean; enableForwarding: boolean; meshInterface: string }

/** The control plane's bridge_config replaces the local subnets and switches when present. */
export function accessRoutingConfig(input: BridgeInput): AccessRoutingConfig {
  const b = input.config.bridge;
  const cp = input.desired.bridge_config ?? {};
  const subnets = Array.isArray(cp.access_subnets) ? cp.access_subnets.filter((s): s is string => typeof s === "string") : b.access_subnets;
  return {
    accessInterface: b.access_interface,
    subnets: subnets.map((s) => parseCidr(s, true)?.cidr ?? s),
    enableNat: typeof cp.enable_nat === "boolean" ? cp.enable_nat : b.enable_nat,
    enableForwarding: typeof cp.enable_forwarding === "boolean" ? cp.enable_forwarding : true,
    meshInterface: input.config.mesh.interface,
  };
}

export class AccessRouting implements BridgeService {
  readonly name = "access_routing" as const;
  #cfg: AccessRoutingConfig | undefined;

  wanted(input: BridgeInput): boolean {
    const c = accessRoutingConfig(input);
    return c.accessInterface !== "" && c.subnets.length > 0;
  }

  apply(input: BridgeInput): Promise<void> {
    this.#cfg = accessRoutingConfig(input);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.#cfg = undefined;
    return Promise.resolve();
  }

  kernel(): BridgeKernelPart {
    const c = this.#cfg;
    if (!c) return {};
    return {
      routes: c.subnets.map((dst) => ({ dst, dev: c.accessInterface })),
      forwarding: c.enableForwarding ? [c.meshInterface, c.accessInterface] : [],
      postrouting: c.enableNat ? [{ id: "access_routing:masquerade", oifname: c.accessInterface, verdict: "masquerade" }] : [],
    };
  }

  status(): BridgeServiceStatus {
    const c = this.#cfg;
    const subnets = c?.subnets ?? [];
    return {
      name: this.name,
      running: c !== undefined,
      detail: c ? `${subnets.join(", ")} via ${c.accessInterface}${c.enableNat ? ", masquerade" : ""}${c.enableForwarding ? "" : ", forwarding off"}` : "no access subnets",
      counters: { routes: subnets.length },
      heartbeatInBridge: true,
      heartbeat: { access_interface: c?.accessInterface ?? "", active_routes: subnets.length },
      capabilities: c ? { access_interface: c.accessInterface, ...Object.fromEntries(subnets.map((s, i) => [`access_subnet_${i}`, s])) } : {},
    };
  }
}
