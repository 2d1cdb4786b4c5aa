import type { MeshSpec } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Config } from "../config/schema.js";
import { meshSpecFor } from "../mesh/spec.js";
import { compilePolicy, type CompiledPolicy } from "../policy/compile.js";
import type { DesiredState } from "../state/desired.js";

// The kernel targets as pure functions of the desired state (design.md §3): the policy
// decides which peers are visible and which rules exist; the mesh spec carries only the
// visible peers.

export interface LocalNode {
  nodeId: string;
  meshIp: string;
  privateKey: string;
}

export interface KernelTargets {
  mesh: MeshSpec;
  policy: CompiledPolicy;
}

export function renderTargets(state: Readonly<DesiredState>, local: LocalNode, config: Config): KernelTargets {
  const peers = Object.values(state.peers);
  const policy = compilePolicy({
    policies: state.policies,
    local: { id: local.nodeId, meshIp: local.meshIp },
    peers,
    config: {
      enabled: config.policy.enabled,
      default: config.policy.default,
      logDenied: config.policy.log_denied,
      meshInterface: config.mesh.interface,
      mode: config.mode,
      chainName: config.policy.chain_name,
    },
  });
  const mesh = meshSpecFor({
    interface: config.mesh.interface,
    listenPort: config.mesh.listen_port,
    mtu: config.mesh.mtu,
    keepaliveSeconds: Math.round(config.mesh.persistent_keepalive.ms / 1000),
    privateKey: local.privateKey,
    meshIp: local.meshIp,
    peers,
    visible: (id) => policy.visiblePeerIds.has(id),
  });
  return { mesh, policy };
}
