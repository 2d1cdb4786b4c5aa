import type { ReactElement } from "react";
import type { FeedItem } from "../reducer.js";
import type { Ui } from "../ui.js";

export interface EventsFeedProps {
  events: FeedItem[];
  maxRows: number;
  columns: number;
}

const kindColor: Record<string, string> = { peer_up: "green", peer_down: "red", health_changed: "yellow", drift_corrected: "magenta", policy_changed: "cyan" };

export function makeEventsFeed({ React, ink }: Ui): (props: EventsFeedProps) => ReactElement {
  const h = React.createElement;
  const { Box, Text } = ink;
  return function EventsFeed({ events, maxRows, columns }: EventsFeedProps): ReactElement {
    return h(
      Box,
      { flexDirection: "column" },
      h(Text, { bold: true }, "recent events"),
      events.length === 0 ? h(Text, { dimColor: true }, "no events yet") : null,
      ...events.slice(0, Math.max(1, maxRows)).map((e, i) =>
        h(
          Box,
          { key: `${e.at}-${i}` },
          h(Text, { dimColor: true }, `${new Date(e.at).toISOString().slice(11, 19)} `),
          h(Text, { color: kindColor[e.kind] ?? "white" }, e.kind.padEnd(16)),
          h(Text, { wrap: "truncate" }, `${e.subject}${e.detail ? `  ${e.detail}` : ""}`.slice(0, Math.max(10, columns - 26))),
        ),
      ),
    );
  };
}
