import type { MeshSpec } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Config } from "../config/schema.js";
import { meshHeader, meshSpecFor } from "../mesh/spec.js";
import { MeshTarget } from "../mesh/target.js";
import { compilePolicy, compileRules, isVisible, type CompiledPolicy, type CompiledRules, type PolicyConfig } from "../policy/compile.js";
import { parseIPv4Int } from "../../proto/lib/net.js";
import type { DesiredState } from "../state/desired.js";

// The kernel targets as functions of the desired state (design.md §3): the policy decides
// which peers are visible and which rules exist; the mesh spec carries only the visible
// peers. `renderTargets` is the pure definition; `TargetRenderer` produces the same
// targets incrementally — a peer event re-decides that one peer — so the agent's cost per
// event does not grow with the mesh (design.md §6).

export interface LocalNode {
  nodeId: string;
  meshIp: string;
  privateKey: string;
}

export interface KernelTargets {
  mesh: MeshSpec;
  policy: CompiledPolicy;
}

function policyConfig(config: Config): PolicyConfig {
  return {
    enabled: config.policy.enabled,
    default: config.policy.default,
    logDenied: config.policy.log_denied,
    meshInterface: config.mesh.interface,
    mode: config.mode,
    chainName: config.policy.chain_name,
  };
}

const keepaliveOf = (config: Config): number => Math.round(config.mesh.persistent_keepalive.ms / 1000);

const headerOf = (local: LocalNode, config: Config) =>
  meshHeader({ interface: config.mesh.interface, listenPort: config.mesh.listen_port, mtu: config.mesh.mtu, privateKey: local.privateKey, meshIp: local.meshIp });

export function renderTargets(state: Readonly<DesiredState>, local: LocalNode, config: Config): KernelTargets {
  const peers = Object.values(state.peers);
  const policy = compilePolicy({ policies: state.policies, local: { id: local.nodeId, meshIp: local.meshIp }, peers, config: policyConfig(config) });
  const mesh = meshSpecFor({ ...headerOf(local, config), meshIp: local.meshIp, keepaliveSeconds: keepaliveOf(config), peers, visible: (id) => policy.visiblePeerIds.has(id) });
  return { mesh, policy };
}

export class TargetRenderer {
  readonly mesh = new MeshTarget();
  readonly #visible = new Set<string>();
  #rules: CompiledRules | undefined;
  #rulesFor: { policies: unknown; local: string } | undefined;
  /** Bumped whenever the compiled firewall differs from the one before. */
  firewallVersion = 0;
  #firewallText = "";

  /**
   * Brings the targets up to date. `changedPeers` names the peers that changed since the
   * last call; undefined means any of them may have (start-up, a full state pull).
   */
  render(state: Readonly<DesiredState>, local: LocalNode, config: Config, changedPeers: ReadonlySet<string> | undefined): CompiledPolicy {
    const localKey = `${local.nodeId} ${local.meshIp}`;
    let all = changedPeers === undefined;
    const rulesStale =
      all || this.#rules === undefined || this.#rulesFor?.policies !== state.policies || this.#rulesFor.local !== localKey || [...changedPeers!].some((id) => this.#rules!.referenced.has(id));
    if (rulesStale) {
      this.#rules = compileRules({
        policies: state.policies,
        local: { id: local.nodeId, meshIp: local.meshIp },
        ipOf: (id) => (state.peers[id] ? parseIPv4Int(state.peers[id].mesh_ip) : undefined),
        config: policyConfig(config),
      });
      this.#rulesFor = { policies: state.policies, local: localKey };
      const text = JSON.stringify(this.#rules.firewall);
      if (text !== this.#firewallText) {
        this.#firewallText = text;
        this.firewallVersion++;
      }
      all = true; // visibility may have changed for anyone
    }
    const rules = this.#rules!;
    this.mesh.setHeader(headerOf(local, config), keepaliveOf(config));
    const decide = (id: string): void => {
      const p = state.peers[id];
      const visible = p !== undefined && id !== local.nodeId && isVisible(rules.visibility, id, p.mesh_ip);
      if (visible) this.#visible.add(id);
      else this.#visible.delete(id);
      this.mesh.setPeer(id, visible ? p : undefined);
    };
    if (all) {
      for (const id of [...this.#visible]) if (!(id in state.peers)) decide(id);
      for (const id in state.peers) decide(id);
    } else for (const id of changedPeers!) decide(id);
    return { visiblePeerIds: this.#visible, firewall: rules.firewall, invalidRules: rules.invalidRules };
  }
}
