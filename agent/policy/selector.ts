// Policy selectors (docs/architecture.md#reconciliation-and-policy, docs/mockcp.md#control-plane-api-what-agents-use): `*`, a node id, or an
// IPv4 address/CIDR. A value containing "/" or parsing as an IP is an address; anything
// else is a node id. Addresses are kept as (network, prefix) integers so containment and
// the node-mode clamp to the mesh range are exact and cheap (the compiler runs per peer).
import { cidr4Contains, ipv4Mask, meshRange, parseIp, parseIPv4Int, parsePrefixLength, type Cidr4 } from "../../proto/lib/net.js";

export type Selector = { kind: "any" } | { kind: "node"; id: string } | ({ kind: "cidr" } & Cidr4);

/** Selector or a reason it is malformed. */
export function parseSelector(value: unknown): Selector | { error: string } {
  if (typeof value !== "string" || value === "") return { error: "empty selector" };
  if (value === "*") return { kind: "any" };
  const slash = value.indexOf("/");
  const addrText = slash < 0 ? value : value.slice(0, slash);
  const ip = parseIPv4Int(addrText);
  if (ip === undefined) {
    const other = parseIp(addrText);
    // Dotted digits are a mistyped address, not a node id (ids look like "n_abc123"):
    // reporting "malformed address" says what is actually wrong.
    if (slash < 0 && other === undefined && !/^[\d.]+$/.test(value)) return { kind: "node", id: value };
    return { error: other?.family === 6 ? `${value}: IPv6 selectors are not supported` : `${value}: malformed address` };
  }
  const bits = slash < 0 ? 32 : parsePrefixLength(value.slice(slash + 1), 4);
  if (bits === undefined) return { error: `${value}: malformed prefix length` };
  // Host bits are masked (as nft does), so 10.100.1.5/24 and 10.100.1.0/24 are one rule.
  return { kind: "cidr", network: (ip & ipv4Mask(bits)) >>> 0, bits };
}

/**
 * Node mode: only mesh addresses arrive on the mesh interface, so a CIDR is intersected
 * with 10.100.0.0/16 (a supernet becomes the mesh range; a disjoint one matches nothing).
 */
export function clampToMesh(c: Cidr4): Cidr4 | undefined {
  if (c.bits <= meshRange.bits) return cidr4Contains(c, meshRange.network) ? { ...meshRange } : undefined;
  return cidr4Contains(meshRange, c.network) ? c : undefined;
}
