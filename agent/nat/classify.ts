import { networkInterfaces } from "node:os";
import type { MappedAddress } from "./stun.js";

// NAT classification (docs/architecture.md#the-control-plane-channel). Pure: the caller supplies
// the answers and the local addresses.

export type NatType = "none" | "full_cone" | "symmetric" | "unknown";

export interface ProbeAnswer {
  /** The address the STUN server saw. */
  mapped: Pick<MappedAddress, "ip" | "port">;
  /** True when the datagram left from `mesh.listen_port` (privhelper's StunProbe could share it). */
  fromMeshPort: boolean;
}

export interface Classification {
  type: NatType;
  /** `ip:port` peers should use; undefined when no usable endpoint was observed. */
  publicEndpoint: string | undefined;
}

/** Does `first` need a second server's answer to be classified? */
export function needsSecondAnswer(first: ProbeAnswer, listenPort: number, local: ReadonlySet<string>): boolean {
  // An ephemeral-port answer is never compared (see classifyNat); `none` needs no second opinion.
  if (!first.fromMeshPort) return false;
  return !(first.mapped.port === listenPort && local.has(first.mapped.ip));
}

/**
 * - Probe from the mesh port: `none` when the mapping is `<local address>:<listen_port>`;
 *   otherwise a second server's answer from the mesh port tells `full_cone` (same ip:port)
 *   from `symmetric` (different); without one the type is `unknown`. The endpoint is the first
 *   mapping.
 * - Probe from an ephemeral port (privhelper could not share the WireGuard port), team
 *   decision: a mapping onto a local address means no NAT on the path, so the type is `none`
 *   and the endpoint `<mapped ip>:<listen_port>`; otherwise the type is `unknown`
 *   and there is no usable endpoint, because the ephemeral port's mapping is not the one
 *   WireGuard's port gets.
 */
export function classifyNat(first: ProbeAnswer, second: ProbeAnswer | undefined, listenPort: number, local: ReadonlySet<string>): Classification {
  const { ip, port } = first.mapped;
  if (!first.fromMeshPort) {
    return local.has(ip) ? { type: "none", publicEndpoint: `${ip}:${listenPort}` } : { type: "unknown", publicEndpoint: undefined };
  }
  const endpoint = `${ip}:${port}`;
  if (port === listenPort && local.has(ip)) return { type: "none", publicEndpoint: endpoint };
  // Only two mappings of the same source port are comparable.
  if (second === undefined || !second.fromMeshPort) return { type: "unknown", publicEndpoint: endpoint };
  const same = second.mapped.ip === ip && second.mapped.port === port;
  return { type: same ? "full_cone" : "symmetric", publicEndpoint: endpoint };
}

/** Every IPv4 address on a local interface (loopback included: it is local too). */
export function localIPv4Addresses(ifaces: ReturnType<typeof networkInterfaces> = networkInterfaces()): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(ifaces)) for (const a of list ?? []) if (a.family === "IPv4") out.add(a.address);
  return out;
}
