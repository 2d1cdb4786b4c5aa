// User access (docs/bridge.md#user-access): WireGuard for users' own devices. The bridge keeps
// one WireGuard device (`wg-access` by default, UDP 51822) whose key it makes once and keeps in
// data_dir; the control plane's `user_access_config` block lists the clients (`public_key`,
// `allowed_ips` = the client's tunnel addresses, `psk`, `label`). The whole service is its kernel
// part: the device with its peers (ApplyMesh, which also routes each client address to the
// device), forwarding on the device and the mesh interface, and the forward rules that let a
// client's traffic through only where the policy grants its address. tailscale and netbird
// providers are validated but not run by this version: they are reported, never started.
import { PlexdError } from "../../proto/lib/errors.js";
import type { WireGuardKeyPair } from "../../proto/lib/keys.js";
import type { AccessProvider } from "../config/schema-bridge.js";
import type { Logger } from "../util/log.js";
import { accessForwardRules, admitPeers, type AccessPeer, type PolicyView, type RefusedPeer } from "./user-access-peers.js";
import type { BridgeInput, BridgeKernelPart, BridgeService, BridgeServiceStatus } from "./service.js";

export interface UserAccessDeps {
  log: Logger;
  dataDir: string;
  /** The device's key pair, made once and kept in data_dir/access/<name>.key. */
  deviceKey: (dataDir: string, name: string) => Promise<WireGuardKeyPair>;
  /** The bridge's mesh IP and the mesh peers' allowed_ips: client addresses must not overlap them. */
  meshPrefixes?: () => readonly string[];
  /** Policies and node addresses, read whenever the forward rules are rendered (a policy change re-renders them). */
  policyView?: () => PolicyView | undefined;
}

export interface UserAccessSettings {
  interfaceName: string;
  listenPort: number;
  maxPeers: number;
  meshInterface: string;
}

type Wireguard = Extract<AccessProvider, { type: "wireguard" }>;

/** Providers this version validates but does not run (no privileged call drives them yet). */
const unsupportedNote = (types: string[]) => (types.length > 0 ? `${types.join(", ")}: not supported by this version` : "");

export class UserAccessService implements BridgeService {
  readonly name = "user_access" as const;
  readonly #d: UserAccessDeps;
  #settings: UserAccessSettings | undefined;
  #key: WireGuardKeyPair | undefined;
  #keyOf = "";
  /** The last `user_access_config.peers` seen; an absent block leaves the peers as they are. */
  #wanted: readonly unknown[] = [];
  #peers: AccessPeer[] = [];
  #refused: RefusedPeer[] = [];
  /** Refusals already logged (public key + reason), so a repeated pull does not log them again. */
  #logged = new Set<string>();
  #unsupported: string[] = [];

  constructor(d: UserAccessDeps) {
    this.#d = d;
  }

  wanted(input: BridgeInput): boolean {
    if (input.config.bridge.access.length === 0) return false;
    return input.desired.user_access_config?.enabled !== false;
  }

  async apply(input: BridgeInput): Promise<void> {
    const providers = input.config.bridge.access;
    this.#unsupported = providers.filter((p) => p.type !== "wireguard").map((p) => p.type);
    const wg = providers.find((p): p is Wireguard => p.type === "wireguard");
    if (!wg) {
      this.#settings = undefined;
      throw new PlexdError("unimplemented", `bridge.access: ${unsupportedNote(this.#unsupported)} (only type wireguard runs)`);
    }
    const settings = settingsOf(input, wg);
    // The key belongs to the device name (a renamed device has a key of its own).
    if (this.#keyOf !== settings.interfaceName) {
      this.#key = await this.#d.deviceKey(this.#d.dataDir, settings.interfaceName);
      this.#keyOf = settings.interfaceName;
    }
    this.#settings = settings;
    const block = input.desired.user_access_config;
    if (block !== undefined) this.#wanted = Array.isArray(block.peers) ? block.peers : [];
    this.#admit();
  }

  #admit(): void {
    const s = this.#settings!;
    const before = new Map(this.#peers.map((p) => [p.publicKey, p]));
    const local = this.#d.policyView?.()?.local.meshIp;
    const meshPrefixes = [...(this.#d.meshPrefixes?.() ?? []), ...(local ? [`${local}/32`] : [])];
    const { peers, refused } = admitPeers(this.#wanted, new Set(before.keys()), { maxPeers: s.maxPeers, devicePublicKey: this.#key!.publicKey, meshPrefixes });
    const { log } = this.#d;
    for (const p of peers) {
      const had = before.get(p.publicKey);
      if (!had) log.info({ public_key: p.publicKey, label: p.label, allowed_ips: p.allowedIps }, "user access peer added");
      else if (JSON.stringify(had) !== JSON.stringify(p)) log.info({ public_key: p.publicKey, label: p.label, allowed_ips: p.allowedIps }, "user access peer changed");
      before.delete(p.publicKey);
    }
    for (const p of before.values()) log.info({ public_key: p.publicKey, label: p.label }, "user access peer removed");
    const logged = new Set<string>();
    for (const r of refused) {
      const k = `${r.publicKey} ${r.reason}`;
      logged.add(k);
      if (!this.#logged.has(k)) log.warn({ public_key: r.publicKey, label: r.label, reason: r.reason }, "user access peer refused");
    }
    this.#logged = logged;
    this.#peers = peers;
    this.#refused = refused;
  }

  stop(): Promise<void> {
    this.#settings = undefined;
    this.#peers = [];
    this.#refused = [];
    this.#logged.clear();
    return Promise.resolve();
  }

  kernel(): BridgeKernelPart {
    const s = this.#settings;
    const key = this.#key;
    if (!s || !key) return {};
    return {
      interfaces: [
        {
          name: s.interfaceName,
          privateKey: key.privateKey,
          listenPort: s.listenPort,
          peers: this.#peers.map((p) => ({ publicKey: p.publicKey, allowedIps: p.allowedIps, ...(p.psk ? { presharedKey: p.psk } : {}) })),
        },
      ],
      forwarding: [s.meshInterface, s.interfaceName],
      forward: accessForwardRules(s.interfaceName, this.#peers, this.#d.policyView?.()),
    };
  }

  /** The running device and its peers (node API: the client config and the peer list). */
  view(): { interfaceName: string; listenPort: number; publicKey: string; peers: readonly AccessPeer[]; refused: readonly RefusedPeer[] } | undefined {
    const s = this.#settings;
    if (!s || !this.#key) return undefined;
    return { interfaceName: s.interfaceName, listenPort: s.listenPort, publicKey: this.#key.publicKey, peers: this.#peers, refused: this.#refused };
  }

  status(): BridgeServiceStatus {
    const s = this.#settings;
    const note = unsupportedNote(this.#unsupported);
    const refused = this.#refused.map((r) => `refused ${r.label || r.publicKey.slice(0, 8) + "…"}: ${r.reason}`);
    const detail = s ? [`${s.interfaceName} on UDP ${s.listenPort}, ${this.#peers.length}/${s.maxPeers} peers`, ...refused, ...(note ? [note] : [])].join("; ") : note || "no wireguard provider in bridge.access";
    return {
      name: this.name,
      running: s !== undefined,
      detail,
      counters: { peers: this.#peers.length, peers_refused: this.#refused.length },
      heartbeat: { enabled: s !== undefined, interface_name: s?.interfaceName ?? "", peer_count: this.#peers.length, listen_port: s?.listenPort ?? 0 },
      capabilities: s && this.#key ? { user_access: "true", access_listen_port: String(s.listenPort), access_public_key: this.#key.publicKey } : {},
    };
  }
}

/**
 * The device's settings: the config's wireguard provider, with the control plane's listen_port
 * when the block has one. The interface name must be the configured one: privhelper manages only
 * the device its root-owned config names.
 */
export function settingsOf(input: BridgeInput, wg: Wireguard): UserAccessSettings {
  const block = input.desired.user_access_config ?? {};
  const problems: string[] = [];
  if (typeof block.interface_name === "string" && block.interface_name !== "" && block.interface_name !== wg.interface_name) {
    problems.push(`user_access_config.interface_name: ${JSON.stringify(block.interface_name)} is not the configured bridge.access[].interface_name ${JSON.stringify(wg.interface_name)}`);
  }
  let listenPort = wg.listen_port;
  if (block.listen_port !== undefined && block.listen_port !== 0) {
    const p = block.listen_port;
    const taken = [input.config.mesh.listen_port, ...(input.config.bridge.relay.enabled ? [input.config.bridge.relay.listen_port] : [])];
    if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535) problems.push(`user_access_config.listen_port: ${JSON.stringify(p)} is not a port`);
    else if (taken.includes(p)) problems.push(`user_access_config.listen_port: ${p} is the mesh or relay port`);
    else listenPort = p;
  }
  if (problems.length > 0) throw new PlexdError("invalid_argument", problems.join("; "));
  return { interfaceName: wg.interface_name, listenPort, maxPeers: wg.max_peers, meshInterface: input.config.mesh.interface };
}
