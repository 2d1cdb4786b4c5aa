import type { ReactElement } from "react";
import type { GetStatusResponse } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import { age } from "../../format.js";
import { pad } from "../layout.js";
import type { Ui } from "../ui.js";

export interface HealthPanelProps {
  status: GetStatusResponse | undefined;
  now: number;
  maxRows: number;
  columns: number;
  dim: boolean;
}

const severityColor: Record<string, string> = { critical: "red", warning: "yellow", info: "blue" };

/** NAT, every health condition and the agent's counters. */
export function makeHealthPanel({ React, ink }: Ui): (props: HealthPanelProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function HealthPanel({ status: s, now, maxRows, columns, dim }: HealthPanelProps): ReactElement {
    const text = (key: string, t: string, color?: string, bold = false): ReactElement =>
      h(Text, { key, wrap: "truncate", dimColor: dim, bold, ...(dim || color === undefined ? {} : { color }) }, pad(t, columns).trimEnd());
    if (s === undefined) return h(Text, { dimColor: true }, "no status yet");
    const lines: ReactElement[] = [
      text("nat-h", "NAT", undefined, true),
      text("nat", `  public endpoint ${s.nat?.publicEndpoint || "unknown"}   type ${s.nat?.type || "unknown"}`),
      text("health-h", `HEALTH  ${s.healthStatus || (s.health.length === 0 ? "healthy" : "")}`, s.healthStatus === "healthy" ? "green" : s.healthStatus === "unhealthy" ? "red" : "yellow", true),
      ...(s.health.length === 0
        ? [text("none", "  no conditions", "green")]
        : s.health.map((c) => text(`c-${c.code}`, `  ${c.severity.toUpperCase().padEnd(8)} ${c.code}: ${c.text} (since ${age(c.since, now)})`, severityColor[c.severity]))),
      text("priv", `  privhelper ${s.privhelperOk ? "ok" : "UNREACHABLE"}   log level ${s.logLevel || "-"}`, s.privhelperOk ? undefined : "red"),
      text("counters-h", "COUNTERS", undefined, true),
      ...Object.entries(s.counters)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => text(`k-${k}`, `  ${k.padEnd(32)} ${String(v)}`)),
    ];
    return h(Box, { flexDirection: "column" }, ...lines.slice(0, Math.max(1, maxRows)));
  };
}
