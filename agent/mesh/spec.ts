import { create } from "@bufbuild/protobuf";
import { MeshSpecSchema, WireGuardPeerSchema, type MeshSpec, type WireGuardPeer } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import type { Peer } from "./peer.js";

// The mesh reconciler's pure half (docs/architecture.md#inside-the-agent): desired state in, MeshSpec out. It
// never reads the kernel; privhelper diffs the spec against the live device.


export interface MeshInputs {
  interface: string;
  listenPort: number;
  mtu: number;
  keepaliveSeconds: number;
  privateKey: string;
  meshIp: string;
  peers: Iterable<Peer>;
  /** Peer visibility from policy (docs/architecture.md#reconciliation-and-policy); undefined = every peer is visible. */
  visible?: (peerId: string) => boolean;
}

/** One desired peer as privhelper takes it; its mesh /32 unless allowed IPs say otherwise. */
export function meshPeer(p: Peer, keepaliveSeconds: number): WireGuardPeer {
  return create(WireGuardPeerSchema, {
    publicKey: p.public_key,
    presharedKey: p.psk,
    endpoint: p.endpoint,
    allowedIps: p.allowed_ips.length > 0 ? [...p.allowed_ips].sort() : [`${p.mesh_ip}/32`],
    persistentKeepalive: keepaliveSeconds,
  });
}

/** Everything in a MeshSpec but the peers. */
export type MeshHeader = Pick<MeshSpec, "interface" | "privateKey" | "listenPort" | "addresses" | "mtu">;

export function meshHeader(inputs: Omit<MeshInputs, "peers" | "visible" | "keepaliveSeconds">): MeshHeader {
  return { interface: inputs.interface, privateKey: inputs.privateKey, listenPort: inputs.listenPort, addresses: [`${inputs.meshIp}/32`], mtu: inputs.mtu };
}

export function meshSpecFor(inputs: MeshInputs): MeshSpec {
  const peers: WireGuardPeer[] = [];
  for (const p of inputs.peers) {
    if (inputs.visible && !inputs.visible(p.id)) continue;
    peers.push(meshPeer(p, inputs.keepaliveSeconds));
  }
  // Stable order: the spec is compared and logged; the kernel does not care.
  peers.sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
  return create(MeshSpecSchema, { ...meshHeader(inputs), peers });
}
