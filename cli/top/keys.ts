import type { TopAction } from "./reducer.js";

// Keyboard → actions, pure. A terminal may deliver several keys in one read ("/bra\r"), and
// Ink then reports them as one input string, so the chunk is walked character by character
// while tracking whether the filter prompt is open.

export interface KeyFlags {
  ctrl?: boolean;
  meta?: boolean;
  tab?: boolean;
  return?: boolean;
  escape?: boolean;
  backspace?: boolean;
  delete?: boolean;
}

export interface KeyResult {
  actions: TopAction[];
  quit: boolean;
  refresh: boolean;
}

/** Every key `plexd top` knows, for the `?` overlay (keep in step with the switch below). */
export const keyHelp: readonly [string, string][] = [
  ["q, Ctrl-C", "quit"],
  ["Tab", "next panel (peers, rules, events, NAT & health, executions, telemetry)"],
  ["s", "cycle the peers sort column"],
  ["/", "filter peers (Enter keeps it, Esc clears it)"],
  ["Esc", "close this help, or clear the filter"],
  ["r", "refresh now"],
  ["p", "pause / resume the live tables"],
  ["?", "show / hide this help"],
];

export function keyActions(filtering: boolean, input: string, key: KeyFlags): KeyResult {
  const out: KeyResult = { actions: [], quit: false, refresh: false };
  if (key.ctrl === true && input === "c") return { ...out, quit: true };
  // Special keys reported by flag (Ink strips their bytes from `input`). Ink also sets `meta`
  // for a lone Esc, so Esc is taken before meta combinations are ignored.
  const tokens: string[] = key.tab === true ? ["\t"] : key.return === true ? ["\r"] : key.escape === true ? ["\x1b"] : key.backspace === true || key.delete === true ? ["\x7f"] : [...input];
  if (key.escape !== true && (key.meta === true || key.ctrl === true)) return out;
  let open = filtering;
  for (const ch of tokens) {
    if (out.quit) break;
    if (open) {
      if (ch === "\r" || ch === "\n") {
        out.actions.push({ type: "endFilter", keep: true });
        open = false;
      } else if (ch === "\x1b") {
        out.actions.push({ type: "endFilter", keep: false });
        open = false;
      } else if (ch === "\x7f" || ch === "\b") out.actions.push({ type: "filterBackspace" });
      else if (ch >= " ") out.actions.push({ type: "filterInput", text: ch });
      continue;
    }
    switch (ch) {
      case "q":
        out.quit = true;
        break;
      case "\t":
        out.actions.push({ type: "switchPanel" });
        break;
      case "s":
        out.actions.push({ type: "cycleSort" });
        break;
      case "/":
        out.actions.push({ type: "startFilter" });
        open = true;
        break;
      case "p":
        out.actions.push({ type: "togglePause" });
        break;
      case "r":
        out.refresh = true;
        break;
      case "?":
        out.actions.push({ type: "toggleHelp" });
        break;
      case "\x1b":
        out.actions.push({ type: "escape" });
        break;
      default:
        break;
    }
  }
  return out;
}
