// The bridge's part of `plexd status` (docs/bridge.md#status): one line per service with its
// counters, the bridge's WireGuard devices, and the routes privhelper holds for the bridge.
import type { GetBridgeStatusResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { deviceText } from "../bridge-device.js";
import type { NodeClient } from "../client.js";

export function bridgeText(b: GetBridgeStatusResponse, now = Date.now()): string {
  if (!b.enabled) return "";
  const lines = ["Bridge"];
  const width = Math.max(0, ...b.services.map((s) => s.name.length));
  for (const s of b.services) {
    const counters = Object.entries(s.counters).map(([k, v]) => `${k} ${v}`).join(", ");
    const state = s.error ? "FAILED" : s.running ? "running" : "off";
    lines.push(`  ${s.name.padEnd(width)}  ${state.padEnd(7)}  ${s.error || s.detail}${counters ? `  (${counters})` : ""}`.trimEnd());
  }
  for (const d of b.devices) lines.push(`  ${"device".padEnd(width)}  ${d.error ? "FAILED " : "up     "}  ${deviceText(d, now)}`);
  lines.push(`  ${"routes".padEnd(width)}  ${b.routesError ? "FAILED " : "ok     "}  ${b.routeCount} route${b.routeCount === 1 ? "" : "s"}, forwarding on ${b.forwarding.join(", ") || "none"}${b.routesError ? `: ${b.routesError}` : ""}`);
  return lines.join("\n");
}

/** The bridge section, or "" when the agent has none (node mode, or an agent without the call). */
export async function bridgeSection(client: NodeClient): Promise<string> {
  const b = await client.agent.getBridgeStatus({}).catch(() => undefined);
  return b ? bridgeText(b) : "";
}
