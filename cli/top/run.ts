import type { ReactElement } from "react";
import { createNodeClient, type NodeClient } from "../client.js";
import { makeAppView } from "./components/app-view.js";
import { startFeeds, type Feeds } from "./feeds.js";
import { keyActions } from "./keys.js";
import { initialState, reducer } from "./reducer.js";
import { loadUi, type Ui } from "./ui.js";

// `plexd top` (docs/operations.md#plexd-top): a read-only live view. The container below owns
// the effects (feeds, resize, keyboard, clock); everything it shows comes from the reducer.

export function makeLiveApp(ui: Ui, client: NodeClient, intervalMs: number): () => ReactElement {
  const { React, ink } = ui;
  const h = React.createElement;
  const AppView = makeAppView(ui);
  return function LiveApp(): ReactElement {
    const { stdout } = ink.useStdout();
    const { exit } = ink.useApp();
    const [state, dispatch] = React.useReducer(reducer, undefined, () => initialState({ columns: stdout.columns || 100, rows: stdout.rows || 30 }));
    const [now, setNow] = React.useState(() => Date.now());
    const feeds = React.useRef<Feeds | undefined>(undefined);

    React.useEffect(() => {
      const onResize = (): void => dispatch({ type: "resize", columns: stdout.columns || 100, rows: stdout.rows || 30 });
      stdout.on("resize", onResize);
      return () => void stdout.off("resize", onResize);
    }, [stdout]);

    React.useEffect(() => {
      const ac = new AbortController();
      feeds.current = startFeeds(client, dispatch, intervalMs, ac.signal);
      const tick = setInterval(() => setNow(Date.now()), 1000);
      return () => {
        ac.abort();
        clearInterval(tick);
      };
    }, []);

    // A ref, so a burst of keys sees the filter state the previous keys left behind.
    const filtering = React.useRef(false);
    filtering.current = state.filtering;
    ink.useInput((input, key) => {
      const r = keyActions(filtering.current, input, key);
      for (const a of r.actions) {
        if (a.type === "startFilter") filtering.current = true;
        if (a.type === "endFilter") filtering.current = false;
        dispatch(a);
      }
      if (r.refresh) feeds.current?.refresh();
      if (r.quit) exit();
    });

    return h(AppView, { state, now });
  };
}

/** Runs until the user quits; resolves with the exit code. */
export async function runTop(opts: { socketPath: string; intervalMs: number }): Promise<number> {
  const ui = await loadUi();
  const client = createNodeClient(opts.socketPath);
  const LiveApp = makeLiveApp(ui, client, opts.intervalMs);
  // Ink restores raw mode and the cursor when it unmounts (q, Ctrl-C).
  const instance = ui.ink.render(ui.React.createElement(LiveApp), { exitOnCtrlC: false });
  await instance.waitUntilExit();
  return 0;
}
