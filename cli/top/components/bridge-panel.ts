import type { ReactElement } from "react";
import type { GetBridgeStatusResponse, ListUserAccessPeersResponse } from "../../../proto/gen/plexd/node/v1/node_pb.js";
import { age, bytes } from "../../format.js";
import type { Ui } from "../ui.js";
import { deviceText } from "../../bridge-device.js";

export interface BridgePanelProps {
  bridge: GetBridgeStatusResponse | undefined;
  /** The user-access clients, when user access runs. */
  userAccess?: ListUserAccessPeersResponse | undefined;
  now?: number;
  maxRows: number;
  columns: number;
  dim: boolean;
}

/** The bridge's services with their counters (relay sessions and bytes among them) and its routes (docs/bridge.md#status). */
export function makeBridgePanel({ React, ink }: Ui): (props: BridgePanelProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function BridgePanel({ bridge, userAccess, now = Date.now(), maxRows, columns, dim }: BridgePanelProps): ReactElement {
    const width = Math.max(20, columns);
    if (!bridge?.enabled) return h(Text, { dimColor: true }, bridge === undefined ? "no bridge status (the agent does not answer GetBridgeStatus)" : "not a bridge (mode: node)");
    const rows = bridge.services.map((s) => ({
      name: s.name,
      state: s.error ? "FAILED" : s.running ? "running" : "off",
      text: `${s.error || s.detail}${Object.keys(s.counters).length > 0 ? `  ${Object.entries(s.counters).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}`,
    }));
    rows.push(...bridge.devices.map((d) => ({ name: "device", state: d.error ? "FAILED" : "up", text: deviceText(d, now) })));
    rows.push({ name: "routes", state: bridge.routesError ? "FAILED" : "ok", text: `${bridge.routeCount} routes, forwarding on ${bridge.forwarding.join(", ") || "none"}${bridge.routesError ? `: ${bridge.routesError}` : ""}` });
    const color = (st: string) => (st === "FAILED" ? "red" : st === "running" || st === "ok" || st === "up" ? "green" : "gray");
    const shown = rows.slice(0, Math.max(1, maxRows));
    // User access: one line per client under the services, as room allows.
    const users = userAccess?.enabled ? userAccess.peers : [];
    const userRoom = Math.max(0, maxRows - shown.length - 2);
    const userLine = (label: string, hs: string, rx: string, tx: string, key: string) => `${label.padEnd(16)} ${hs.padEnd(10)} ${rx.padStart(9)} ${tx.padStart(9)}  ${key}`.slice(0, width);
    return h(
      Box,
      { flexDirection: "column" },
      h(Text, { bold: true, dimColor: dim, wrap: "truncate" }, `${"SERVICE".padEnd(15)} ${"STATE".padEnd(8)} DETAIL / COUNTERS`.slice(0, width)),
      ...shown.map((r, i) =>
        h(Box, { key: `${i}:${r.name}` }, h(Text, { dimColor: dim }, `${r.name.padEnd(15)} `), h(Text, { color: color(r.state), dimColor: dim }, r.state.padEnd(8)), h(Text, { dimColor: dim, wrap: "truncate-end" }, ` ${r.text}`.slice(0, Math.max(10, width - 24)))),
      ),
      ...(userAccess?.enabled && userRoom > 0
        ? [
            h(Text, { key: "ua-head", bold: true, dimColor: dim, wrap: "truncate" }, userLine(`USERS (${userAccess.interfaceName})`, "HANDSHAKE", "RX", "TX", "PUBLIC KEY")),
            ...(users.length === 0 ? [h(Text, { key: "ua-none", dimColor: true }, "no clients")] : []),
            ...users.slice(0, userRoom).map((p) => h(Text, { key: `ua-${p.publicKey}`, dimColor: dim, wrap: "truncate" }, userLine(p.label || "-", age(p.lastHandshake, now), bytes(p.rxBytes), bytes(p.txBytes), p.publicKey))),
          ]
        : []),
    );
  };
}
