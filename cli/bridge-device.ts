// One line per bridge WireGuard device (site-to-site tunnels, user access), for `plexd status`
// and the Bridge panel of `plexd top` alike (docs/bridge.md#status).
import type { BridgeDevice } from "../proto/gen/plexd/node/v1/node_pb.js";
import { age, bytes } from "./format.js";

/** ", handshake 5s ago, rx 1.2 KiB, tx 3.0 KiB" once the device has seen a handshake or a byte; "" before. */
export function deviceTraffic(d: BridgeDevice, now: number): string {
  if (d.lastHandshake === undefined && d.rxBytes === 0n && d.txBytes === 0n) return "";
  return `, handshake ${age(d.lastHandshake, now)}, rx ${bytes(d.rxBytes)}, tx ${bytes(d.txBytes)}`;
}

/** "wg-s2s-1a2b3c4d on UDP 51823, 1 peer, handshake …" or, for a failed device, its reason. */
export function deviceText(d: BridgeDevice, now: number): string {
  return `${d.name} on UDP ${d.listenPort}, ${d.peers} peer${d.peers === 1 ? "" : "s"}${d.error ? `: ${d.error}` : deviceTraffic(d, now)}`;
}
