import type { MeshSpec } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Config } from "../config/schema.js";
import { PeerAdmission, type AdmissionContext } from "../mesh/admission.js";
import type { Peer } from "../mesh/peer.js";
import { meshHeader, meshSpecFor } from "../mesh/spec.js";
import { MeshTarget } from "../mesh/target.js";
import { wireGuardPublicKey } from "../../proto/lib/keys.js";
import type { RoutePolicy } from "../../proto/lib/mesh-peer.js";
import { compilePolicy, compileRules, isVisible, type CompiledPolicy, type CompiledRules, type PolicyConfig } from "../policy/compile.js";
import { parseIPv4Int } from "../../proto/lib/net.js";
import type { DesiredState } from "../state/desired.js";

// The kernel targets as functions of the desired state (docs/architecture.md#inside-the-agent): admission decides
// which peers may reach the kernel at all (mesh/admission.ts), the policy which of those are
// visible and which rules exist; the mesh spec carries only admitted, visible peers. `renderTargets` is the pure definition; `TargetRenderer` produces the same
// targets incrementally — a peer event re-decides that one peer — so the agent's cost per
// event does not grow with the mesh (docs/testing.md#performance-targets).

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

/** The route limits privhelper enforces, from the same configuration keys. */
export function routePolicyOf(config: Config): RoutePolicy {
  return { allowDefaultRoute: config.mesh.allow_default_route, minRoutePrefix: { 4: config.mesh.min_route_prefix_v4, 6: config.mesh.min_route_prefix_v6 } };
}

/** Resolves DNS-name endpoints; without one, such a peer is configured without an endpoint. */
export type EndpointResolver = AdmissionContext["resolve"];
const noResolver: EndpointResolver = () => undefined;

const keepaliveOf = (config: Config): number => Math.round(config.mesh.persistent_keepalive.ms / 1000);

const headerOf = (local: LocalNode, config: Config) =>
  meshHeader({ interface: config.mesh.interface, listenPort: config.mesh.listen_port, mtu: config.mesh.mtu, privateKey: local.privateKey, meshIp: local.meshIp });

/** The pure definition: peers admitted in the store's order (its order of arrival), then policy. */
export function renderTargets(state: Readonly<DesiredState>, local: LocalNode, config: Config, resolve: EndpointResolver = noResolver): KernelTargets {
  const admission = new PeerAdmission();
  const ctx: AdmissionContext = { policy: routePolicyOf(config), ownPublicKey: wireGuardPublicKey(local.privateKey), resolve };
  const admitted: Peer[] = [];
  for (const [id, p] of Object.entries(state.peers)) {
    if (id === local.nodeId) continue;
    admission.decide(id, p, ctx);
    const a = admission.admitted(id);
    if (a !== undefined) admitted.push(a);
  }
  const policy = compilePolicy({ policies: state.policies, local: { id: local.nodeId, meshIp: local.meshIp }, peers: Object.values(state.peers), config: policyConfig(config) });
  const mesh = meshSpecFor({ ...headerOf(local, config), meshIp: local.meshIp, keepaliveSeconds: keepaliveOf(config), peers: admitted, visible: (id) => policy.visiblePeerIds.has(id) });
  return { mesh, policy };
}

export class TargetRenderer {
  readonly mesh = new MeshTarget();
  readonly admission = new PeerAdmission();
  readonly #resolve: EndpointResolver;
  #ownKey: [privateKey: string, publicKey: string] | undefined;
  /** Visible under the policy (quarantined peers included: visibility is the policy's verdict). */
  readonly #visible = new Set<string>();
  #rules: CompiledRules | undefined;
  #rulesFor: { policies: unknown; local: string } | undefined;
  /** Bumped whenever the compiled firewall differs from the one before. */
  firewallVersion = 0;
  #firewallText = "";

  constructor(resolve: EndpointResolver = noResolver) {
    this.#resolve = resolve;
  }

  #ownPublicKey(privateKey: string): string {
    if (this.#ownKey?.[0] !== privateKey) this.#ownKey = [privateKey, wireGuardPublicKey(privateKey)];
    return this.#ownKey[1];
  }

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
    const ctx: AdmissionContext = { policy: routePolicyOf(config), ownPublicKey: this.#ownPublicKey(local.privateKey), resolve: this.#resolve };
    const place = (id: string): void => {
      const admitted = this.admission.admitted(id);
      this.mesh.setPeer(id, admitted !== undefined && this.#visible.has(id) ? admitted : undefined);
    };
    const decide = (id: string): void => {
      const p = id === local.nodeId ? undefined : state.peers[id];
      if (p !== undefined && isVisible(rules.visibility, id, p.mesh_ip)) this.#visible.add(id);
      else this.#visible.delete(id);
      const changed = this.admission.decide(id, p, ctx);
      place(id);
      // Peers admitted because this one gave up a key or prefix they collided with.
      for (const other of changed) if (other !== id) place(other);
    };
    if (all) {
      for (const id of new Set([...this.#visible, ...this.admission.ids()])) if (!(id in state.peers)) decide(id);
      for (const id in state.peers) decide(id);
    } else for (const id of changedPeers!) decide(id);
    return { visiblePeerIds: this.#visible, firewall: rules.firewall, invalidRules: rules.invalidRules };
  }
}
