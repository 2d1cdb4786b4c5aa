import type { Severity } from "./registry.js";

// The one verdict derived from the health conditions, shared by the heartbeat's wording, the
// node API's GET /v1/health and grpc.health.v1, and `plexd status --check`:
// healthy — no warning or critical condition; degraded — warnings only (the node still
// serves, the operator should look); unhealthy — a critical condition (a probe fails).

export type HealthVerdict = "healthy" | "degraded" | "unhealthy";

export function healthVerdict(conditions: readonly { severity: Severity | string }[]): HealthVerdict {
  if (conditions.some((c) => c.severity === "critical")) return "unhealthy";
  if (conditions.some((c) => c.severity === "warning")) return "degraded";
  return "healthy";
}
