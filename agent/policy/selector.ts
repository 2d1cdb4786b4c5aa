// Policy selectors (node-agent.md 4.3, control-plane.md 3.0.1): `*`, a node id, or an
// IPv4 address/CIDR. A value containing "/" or parsing as an IP is an address; anything
// else is a node id. Addresses are kept as (network, prefix) integers so containment and
// the node-mode clamp to the mesh range are exact.
import { isIP } from "node:net";

export type Selector =
  | { kind: "any" }
  | { kind: "node"; id: string }
  | { kind: "cidr"; network: number; bits: number };

export const meshRange = { network: 0x0a640000, bits: 16 } as const; // 10.100.0.0/16

export function parseIPv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let v = 0;
  for (const p of m.slice(1)) {
    if (p.length > 1 && p.startsWith("0")) return undefined; // no octal-looking octets
    const n = Number(p);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v;
}

export function formatIPv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function maskOf(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

export function cidrText(c: { network: number; bits: number }): string {
  return `${formatIPv4(c.network)}/${c.bits}`;
}

export function cidrContains(c: { network: number; bits: number }, ip: number): boolean {
  return ((ip & maskOf(c.bits)) >>> 0) === c.network;
}

/** Selector or a reason it is malformed. */
export function parseSelector(value: unknown): Selector | { error: string } {
  if (typeof value !== "string" || value === "") return { error: "empty selector" };
  if (value === "*") return { kind: "any" };
  const slash = value.indexOf("/");
  // Dotted digits are a mistyped address, not a node id (ids look like "n_abc123"):
  // reporting "malformed address" says what is actually wrong.
  if (slash < 0 && isIP(value) === 0 && !/^[\d.]+$/.test(value)) return { kind: "node", id: value };
  const addrText = slash < 0 ? value : value.slice(0, slash);
  const bitsText = slash < 0 ? "32" : value.slice(slash + 1);
  const ip = parseIPv4(addrText);
  if (ip === undefined) return { error: isIP(addrText) === 6 ? `${value}: IPv6 selectors are not supported` : `${value}: malformed address` };
  if (!/^(?:0|[1-9]\d?)$/.test(bitsText) || Number(bitsText) > 32) return { error: `${value}: malformed prefix length` };
  const bits = Number(bitsText);
  // Host bits are masked (as nft does), so 10.100.1.5/24 and 10.100.1.0/24 are one rule.
  return { kind: "cidr", network: (ip & maskOf(bits)) >>> 0, bits };
}

/**
 * Node mode: only mesh addresses arrive on the mesh interface, so a CIDR is intersected
 * with 10.100.0.0/16 (a supernet becomes the mesh range; a disjoint one matches nothing).
 */
export function clampToMesh(c: { network: number; bits: number }): { network: number; bits: number } | undefined {
  if (c.bits <= meshRange.bits) return cidrContains(c, meshRange.network) ? { ...meshRange } : undefined;
  return cidrContains(meshRange, c.network) ? c : undefined;
}
