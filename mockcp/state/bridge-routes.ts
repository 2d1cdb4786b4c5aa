// A bridge's access subnets as the other nodes see them (docs/bridge.md#access-routing): the
// subnets the bridge announces in its capabilities (`bridge.access_subnet_<i>`) join its
// allowed IPs on every other node, so their WireGuard sends that traffic to the bridge.
import { parseCidr } from "../../proto/lib/net.js";

export function bridgeRoutes(capabilities: unknown): string[] {
  const b = typeof capabilities === "object" && capabilities !== null ? (capabilities as { bridge?: unknown }).bridge : undefined;
  if (typeof b !== "object" || b === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(b as Record<string, unknown>)) {
    if (!/^access_subnet_\d+$/.test(k) || typeof v !== "string") continue;
    const c = parseCidr(v, true);
    if (c && c.bits > 0) out.push(c.cidr);
  }
  return [...new Set(out)].sort();
}
