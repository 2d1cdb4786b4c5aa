// The frame every bridge service plugs into (docs/bridge.md). A bridge is a mesh node that runs up
// to five services; each starts, reconfigures and stops on its own, so a failing service never
// takes the others down. The manager (manager.ts) owns the lifecycle; a service owns only its part.
import type { Config } from "../config/load.js";

export type BridgeServiceName = "access_routing" | "relay" | "user_access" | "ingress" | "site_to_site";

export const bridgeServiceNames: readonly BridgeServiceName[] = ["access_routing", "relay", "user_access", "ingress", "site_to_site"];

/**
 * What the control plane wants of the bridge: the state-pull blocks (`bridge_config`,
 * `relay_config`, `user_access_config`, `ingress_config`, `site_to_site_config`), with single
 * `*_assigned` / `*_revoked` events already folded in (assign = upsert by id, revoke = remove by id).
 * A block that is absent means "leave the feature as it is"; each service parses its own block.
 */
export type BridgeDesired = Partial<Record<BridgeBlockName, Record<string, unknown>>>;
export type BridgeBlockName = "bridge_config" | "relay_config" | "user_access_config" | "ingress_config" | "site_to_site_config";

/** Everything a service may read when it (re)applies. */
export interface BridgeInput {
  /** The whole agent config (`mode: bridge`); a service reads `config.bridge.*` and the mesh keys it needs. */
  config: Config;
  desired: BridgeDesired;
}

export interface BridgeServiceStatus {
  name: BridgeServiceName;
  running: boolean;
  /** One line for people: what runs, or why it does not. */
  detail: string;
  /** e.g. relay: sessions, bytes_relayed_total, relay_unknown_source_total ... */
  counters: Record<string, number>;
  /** The service's heartbeat block (or its keys of the `bridge` block when `heartbeatInBridge`). */
  heartbeat?: Record<string, unknown>;
  /** true: `heartbeat` keys merge into the heartbeat's `bridge` block; false/absent: a top-level block named after the service. */
  heartbeatInBridge?: boolean;
  /** Keys of the heartbeat's `bridge` block a service gives beside its own top-level block (ingress: `ingress_enabled`, `active_ingress_rules`). */
  bridgeHeartbeat?: Record<string, unknown>;
  /** The service's keys of the `bridge` capabilities map (string values). */
  capabilities?: Record<string, string>;
}

/** A WireGuard interface beside the mesh one (`wg-access`, `wg-s2s-*`). */
export interface BridgeWgInterface {
  name: string;
  privateKey: string;
  listenPort: number;
  addresses?: string[];
  peers: { publicKey: string; allowedIps: string[]; endpoint?: string; presharedKey?: string; keepaliveSeconds?: number }[];
}

/** A rule of the bridge's forward chain or nat chains, in the firewall model's terms. */
export interface BridgeFirewallRule {
  /** Stable id: "<service>:<what>", e.g. "access_routing:masquerade". */
  id: string;
  iifname?: string;
  oifname?: string;
  srcCidr?: string;
  dstCidr?: string;
  protocol?: "tcp" | "udp" | "icmp";
  portFrom?: number;
  portTo?: number;
  verdict: "accept" | "drop" | "masquerade" | "redirect";
  /** For `redirect`: the local port traffic is sent to. */
  redirectPort?: number;
  /** Match only packets of connections already established (or related), e.g. replies. */
  ctEstablished?: boolean;
}

/** The kernel state a service wants; the manager merges every service's part into one set of specs. */
export interface BridgeKernelPart {
  interfaces?: BridgeWgInterface[];
  /** Link-scope routes: `dst` CIDR via interface `dev`. */
  routes?: { dst: string; dev: string }[];
  /** Interfaces that need per-interface forwarding on. */
  forwarding?: string[];
  /** Rules of chain `plexd-bridge-fwd` (forward hook). */
  forward?: BridgeFirewallRule[];
  /** Rules of nat chain `postrouting` (masquerade). */
  postrouting?: BridgeFirewallRule[];
  /** Rules of nat chain `prerouting` (redirects). */
  prerouting?: BridgeFirewallRule[];
}

export interface BridgeService {
  readonly name: BridgeServiceName;
  /** Whether config and desired state ask for this service at all; when this turns false the manager calls stop(). */
  wanted(input: BridgeInput): boolean;
  /** Start, or reconfigure to `input`. Throwing marks only this service as failed. */
  apply(input: BridgeInput): Promise<void>;
  /** Close agent-side resources; the kernel part disappears with the next kernel() the manager reads. */
  stop(): Promise<void>;
  status(): BridgeServiceStatus;
  /** Kernel state this service wants now (optional: the relay and ingress may need none). */
  kernel?(): BridgeKernelPart;
}
