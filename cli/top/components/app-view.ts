import type { ReactElement } from "react";
import { fitSegments } from "../layout.js";
import { visiblePeers, type Panel, type TopState } from "../reducer.js";
import type { Ui } from "../ui.js";
import { makeEventsFeed } from "./events-feed.js";
import { makeExecutionsPanel } from "./executions-panel.js";
import { makeBridgePanel } from "./bridge-panel.js";
import { headerLines, makeHeader } from "./header.js";
import { makeHealthPanel } from "./health-panel.js";
import { makeHelpOverlay } from "./help-overlay.js";
import { makePeersTable } from "./peers-table.js";
import { makeRulesPanel } from "./rules-panel.js";
import { makeTelemetryPanel } from "./telemetry-panel.js";

export interface AppViewProps {
  state: TopState;
  now: number;
}

const tabs: Record<Panel, string> = { peers: "Peers", rules: "Firewall rules", events: "Events", health: "NAT & health", executions: "Executions", telemetry: "Telemetry", bridge: "Bridge" };
const footer = ["q quit", "Tab panel", "? help", "s sort", "/ filter", "r refresh", "p pause", "Esc close"];

/** The whole screen as a function of the reducer state. */
export function makeAppView(ui: Ui): (props: AppViewProps) => ReactElement {
  const { React, ink } = ui;
  const h = React.createElement;
  const { Box, Text } = ink;
  const Header = makeHeader(ui);
  const PeersTable = makePeersTable(ui);
  const RulesPanel = makeRulesPanel(ui);
  const EventsFeed = makeEventsFeed(ui);
  const HealthPanel = makeHealthPanel(ui);
  const HelpOverlay = makeHelpOverlay(ui);
  const ExecutionsPanel = makeExecutionsPanel(ui);
  const TelemetryPanel = makeTelemetryPanel(ui);
  const BridgePanel = makeBridgePanel(ui);
  return function AppView({ state, now }: AppViewProps): ReactElement {
    // Header, a blank line, the tabs, the panel, the footer: the panel gets what is left. One
    // row stays free: an output as tall as the terminal makes Ink clear and redraw the whole
    // screen on every frame (it flickers, and the first lines scroll away).
    const height = Math.max(8, state.rows - 1);
    const body = Math.max(3, height - headerLines(state) - 3);
    const dim = !state.connected && state.status !== undefined;
    const panel = state.help
      ? h(HelpOverlay)
      : state.panel === "peers"
        ? h(PeersTable, { peers: visiblePeers(state, now), sort: state.sort, filter: state.filter, filtering: state.filtering, now, maxRows: body - 3, columns: state.columns, dim })
        : state.panel === "rules"
          ? h(RulesPanel, { rules: state.rules, maxRows: body - 1, columns: state.columns, dim })
          : state.panel === "events"
            ? h(EventsFeed, { events: state.events, maxRows: body - 1, columns: state.columns })
            : state.panel === "executions"
              ? h(ExecutionsPanel, { executions: state.executions, now, maxRows: body - 1, columns: state.columns, dim })
              : state.panel === "telemetry"
                ? h(TelemetryPanel, { status: state.status, peers: state.peers, now, maxRows: body, columns: state.columns, dim })
                : state.panel === "bridge"
                  ? h(BridgePanel, { bridge: state.bridge, userAccess: state.userAccess, now, maxRows: body - 1, columns: state.columns, dim })
                : h(HealthPanel, { status: state.status, now, maxRows: body, columns: state.columns, dim });
    // The selected tab is bracketed as well as highlighted, so it shows without colour too.
    const tabParts = (Object.keys(tabs) as Panel[]).map((p) => ({ p, text: p === state.panel ? `[${tabs[p]}]` : ` ${tabs[p]} `, priority: p === state.panel ? 0 : 1 }));
    return h(
      Box,
      { flexDirection: "column", width: state.columns, height },
      h(Header, { state, now }),
      h(
        Box,
        { marginTop: 1 },
        ...fitSegments(tabParts, state.columns, "").map((t) => h(Text, { key: t.p, inverse: t.p === state.panel, bold: t.p === state.panel }, t.text)),
      ),
      h(Box, { flexDirection: "column", flexGrow: 1 }, panel),
      h(Text, { dimColor: true, wrap: "truncate" }, fitSegments(footer.map((text, i) => ({ text, priority: i < 3 ? 0 : i })), state.columns).map((s) => s.text).join("  ")),
    );
  };
}
