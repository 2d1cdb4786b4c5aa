import type { ReactElement } from "react";
import { visiblePeers, type TopState } from "../reducer.js";
import type { Ui } from "../ui.js";
import { makeEventsFeed } from "./events-feed.js";
import { makeHeader } from "./header.js";
import { makePeersTable } from "./peers-table.js";
import { makeRulesPanel } from "./rules-panel.js";

export interface AppViewProps {
  state: TopState;
  now: number;
}

const tabs = { peers: "Peers", rules: "Firewall rules", events: "Events" } as const;

/** The whole screen as a function of the reducer state. */
export function makeAppView(ui: Ui): (props: AppViewProps) => ReactElement {
  const { React, ink } = ui;
  const h = React.createElement;
  const { Box, Text } = ink;
  const Header = makeHeader(ui);
  const PeersTable = makePeersTable(ui);
  const RulesPanel = makeRulesPanel(ui);
  const EventsFeed = makeEventsFeed(ui);
  return function AppView({ state, now }: AppViewProps): ReactElement {
    const healthRows = Math.max(1, state.status?.health.length ?? 1);
    const body = Math.max(3, state.rows - (2 + healthRows) - 6);
    const panel =
      state.panel === "peers"
        ? h(PeersTable, { peers: visiblePeers(state, now), sort: state.sort, filter: state.filter, filtering: state.filtering, now, maxRows: body - 2, columns: state.columns })
        : state.panel === "rules"
          ? h(RulesPanel, { rules: state.rules, maxRows: body - 1 })
          : h(EventsFeed, { events: state.events, maxRows: body - 1 });
    return h(
      Box,
      { flexDirection: "column", width: state.columns },
      h(Header, { status: state.status, connected: state.connected, paused: state.paused, now }),
      state.connected
        ? null
        : h(Text, { color: "red", bold: true }, `agent not reachable — retrying${state.error === undefined ? "" : ` (${state.error})`}`),
      h(
        Box,
        { marginTop: 1 },
        ...(Object.keys(tabs) as (keyof typeof tabs)[]).map((p) =>
          h(Text, { key: p, inverse: p === state.panel, bold: p === state.panel }, ` ${tabs[p]} `),
        ),
      ),
      panel,
      h(Text, { dimColor: true }, "q quit  Tab panel  s sort  / filter  r refresh  p pause"),
    );
  };
}
