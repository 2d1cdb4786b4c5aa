import type { ReactElement } from "react";
import type { GetStatusResponse } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import { age } from "../../format.js";
import type { Ui } from "../ui.js";

export interface HeaderProps {
  status: GetStatusResponse | undefined;
  connected: boolean;
  paused: boolean;
  now: number;
}

const severityColor: Record<string, string> = { critical: "red", warning: "yellow", info: "blue" };

export function makeHeader({ React, ink }: Ui): (props: HeaderProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function Header({ status: s, connected, paused, now }: HeaderProps): ReactElement {
    if (s === undefined) return h(Box, null, h(Text, { bold: true }, "plexd top"), h(Text, { dimColor: true }, connected ? "  waiting for status…" : ""));
    const sse = s.sse;
    const cp = sse?.connected === true ? h(Text, { color: "green" }, "connected") : h(Text, { color: "red" }, "disconnected");
    return h(
      Box,
      { flexDirection: "column" },
      h(
        Box,
        null,
        h(Text, { bold: true }, s.nodeId || "(unregistered)"),
        h(Text, null, `  ${s.meshIp}  ${s.mode}  v${s.version}  `),
        h(Text, { color: s.phase === "connected" ? "green" : "yellow" }, s.phase),
        h(Text, null, `  up ${s.uptime}`),
        paused ? h(Text, { color: "magenta", bold: true }, "  [PAUSED]") : null,
      ),
      h(
        Box,
        null,
        h(Text, null, "control plane "),
        cp,
        h(Text, null, ` (${sse?.reconnects ?? 0} reconnects)  heartbeat ${age(s.lastHeartbeat?.at, now)}  reconcile ${age(s.lastReconcile?.at, now)}`),
        h(Text, null, `  NAT ${s.nat?.publicEndpoint || "-"} ${s.nat?.type ?? ""}`),
      ),
      s.health.length === 0
        ? h(Text, { color: "green" }, "health ok")
        : h(
            Box,
            { flexDirection: "column" },
            ...s.health.map((c) => h(Text, { key: c.code, color: severityColor[c.severity] ?? "white" }, `${c.severity.toUpperCase()} ${c.code}: ${c.text} (${age(c.since, now)})`)),
          ),
    );
  };
}
