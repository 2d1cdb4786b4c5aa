import type { ReactElement } from "react";
import type { GetBridgeStatusResponse } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import type { Ui } from "../ui.js";
import { deviceText } from "../../bridge-device.js";

export interface BridgePanelProps {
  bridge: GetBridgeStatusResponse | undefined;
  maxRows: number;
  columns: number;
  dim: boolean;
}

/** The bridge's services with their counters (relay sessions and bytes among them) and its routes (docs/bridge.md#status). */
export function makeBridgePanel({ React, ink }: Ui): (props: BridgePanelProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function BridgePanel({ bridge, maxRows, columns, dim }: BridgePanelProps): ReactElement {
    const width = Math.max(20, columns);
    if (!bridge?.enabled) return h(Text, { dimColor: true }, bridge === undefined ? "no bridge status (the agent does not answer GetBridgeStatus)" : "not a bridge (mode: node)");
    const rows = bridge.services.map((s) => ({
      name: s.name,
      state: s.error ? "FAILED" : s.running ? "running" : "off",
      text: `${s.error || s.detail}${Object.keys(s.counters).length > 0 ? `  ${Object.entries(s.counters).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}`,
    }));
    const now = Date.now();
    rows.push(...bridge.devices.map((d) => ({ name: "device", state: d.error ? "FAILED" : "up", text: deviceText(d, now) })));
    rows.push({ name: "routes", state: bridge.routesError ? "FAILED" : "ok", text: `${bridge.routeCount} routes, forwarding on ${bridge.forwarding.join(", ") || "none"}${bridge.routesError ? `: ${bridge.routesError}` : ""}` });
    const color = (st: string) => (st === "FAILED" ? "red" : st === "running" || st === "ok" || st === "up" ? "green" : "gray");
    return h(
      Box,
      { flexDirection: "column" },
      h(Text, { bold: true, dimColor: dim, wrap: "truncate" }, `${"SERVICE".padEnd(15)} ${"STATE".padEnd(8)} DETAIL / COUNTERS`.slice(0, width)),
      ...rows.slice(0, Math.max(1, maxRows)).map((r, i) =>
        h(Box, { key: `${i}:${r.name}` }, h(Text, { dimColor: dim }, `${r.name.padEnd(15)} `), h(Text, { color: color(r.state), dimColor: dim }, r.state.padEnd(8)), h(Text, { dimColor: dim, wrap: "truncate-end" }, ` ${r.text}`.slice(0, Math.max(10, width - 24)))),
      ),
    );
  };
}
