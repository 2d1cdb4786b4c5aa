// The node API's view of bridge user access (docs/bridge.md#user-access): one client's WireGuard
// configuration for `plexd bridge user-config`, and the clients with their handshakes and bytes
// for `plexd top`. The service holds the admitted clients; privhelper's ReadMesh the live data.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { GetUserAccessConfigResponseSchema, ListUserAccessPeersResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { cidr4Text, formatEndpoint, meshRange, parseHostPort } from "../../proto/lib/net.js";
import { accessRoutingConfig } from "../bridge/access.js";
import type { BridgeManager } from "../bridge/manager.js";
import { UserAccessService } from "../bridge/user-access.js";
import type { Config } from "../config/load.js";
import type { PrivClient } from "../privclient/client.js";

const readDeadlineMs = 5000;

function running(bridge: BridgeManager | undefined) {
  const svc = bridge?.service("user_access");
  return svc instanceof UserAccessService ? svc.view() : undefined;
}

/** GetUserAccessConfig: `user` is a label or a public key; the endpoint comes from NAT discovery. */
export function userAccessConfigMsg(bridge: BridgeManager | undefined, config: Config, publicEndpoint: string | undefined, user: string): MessageInitShape<typeof GetUserAccessConfigResponseSchema> {
  const v = running(bridge);
  if (!bridge || !v) throw new PlexdError("failed_precondition", "user access does not run on this node (mode: bridge with a wireguard entry in bridge.access)");
  const byKey = v.peers.find((p) => p.publicKey === user);
  const byLabel = v.peers.filter((p) => p.label !== "" && p.label === user);
  if (!byKey && byLabel.length > 1) throw new PlexdError("failed_precondition", `label ${JSON.stringify(user)} names ${byLabel.length} clients; give the public key`);
  const peer = byKey ?? byLabel[0];
  if (!peer) {
    const refused = v.refused.find((r) => r.publicKey === user || (r.label !== "" && r.label === user));
    throw new PlexdError("not_found", refused ? `client ${JSON.stringify(user)} was refused: ${refused.reason}` : `no user-access client ${JSON.stringify(user)} (neither a label nor a public key of a running client)`);
  }
  const host = publicEndpoint ? parseHostPort(publicEndpoint)?.host : undefined;
  const access = accessRoutingConfig(bridge.input());
  const subnets = access.accessInterface !== "" ? access.subnets : [];
  return {
    publicKey: peer.publicKey,
    label: peer.label,
    addresses: peer.allowedIps,
    presharedKey: peer.psk ?? "",
    serverPublicKey: v.publicKey,
    listenPort: v.listenPort,
    endpoint: host ? formatEndpoint(host, v.listenPort) : "",
    allowedIps: [cidr4Text(meshRange), ...subnets],
    persistentKeepalive: Math.round(config.mesh.persistent_keepalive.ms / 1000) || 25,
  };
}

/** ListUserAccessPeers: the admitted clients with live tunnel data, and the refused ones. */
export async function userAccessPeersMsg(bridge: BridgeManager | undefined, priv: Pick<PrivClient, "readMesh">): Promise<MessageInitShape<typeof ListUserAccessPeersResponseSchema>> {
  const v = running(bridge);
  if (!v) return { enabled: false };
  // Without privhelper the clients are still listed, just without handshakes and bytes.
  const live = await priv.readMesh({ interface: v.interfaceName }, { timeoutMs: readDeadlineMs }).catch(() => undefined);
  const byKey = new Map((live?.peers ?? []).map((p) => [p.publicKey, p]));
  return {
    enabled: true,
    interfaceName: v.interfaceName,
    listenPort: v.listenPort,
    publicKey: v.publicKey,
    peers: v.peers.map((p) => {
      const l = byKey.get(p.publicKey);
      const hs = l?.lastHandshake && l.lastHandshake.seconds > 0n ? { lastHandshake: timestampFromMs(Number(l.lastHandshake.seconds) * 1000) } : {};
      return { publicKey: p.publicKey, label: p.label, allowedIps: p.allowedIps, endpoint: l?.endpoint ?? "", ...hs, rxBytes: l?.rxBytes ?? 0n, txBytes: l?.txBytes ?? 0n };
    }),
    refused: v.refused.map((r) => ({ publicKey: r.publicKey, label: r.label, reason: r.reason })),
  };
}
