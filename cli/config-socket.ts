import { readFile } from "node:fs/promises";

// Which node API socket a client command talks to (docs/config-reference.md): `--socket`,
// else PLEXD_NODE_API_SOCKET, else `node_api.socket` from the configuration file (`--config`,
// PLEXD_CONFIG, /etc/plexd/config.yaml), else the default. The file is only read for that one
// key: it may belong to another user or be invalid, and a client command must still work
// (a missing or unreadable file means the default), so nothing here validates the rest.

export const defaultSocket = "/run/plexd/api.sock";

export const defaultActionsSocket = "/run/plexd/actions.sock";

/** `<section>.socket` from the configuration file: node_api (default) or actions. */
export async function socketFromConfig(file: string, section: "node_api" | "actions" = "node_api"): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return undefined;
  }
  // Most files never set it; skip loading the YAML parser then (plexd status start-up time).
  if (!new RegExp(`\\b${section}\\b`).test(text) || !/\bsocket\b/.test(text)) return undefined;
  const { parse } = await import("yaml");
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    return undefined;
  }
  const api = (doc as Record<string, unknown> | null)?.[section];
  const socket = typeof api === "object" && api !== null ? (api as { socket?: unknown }).socket : undefined;
  return typeof socket === "string" && socket.startsWith("/") ? socket : undefined;
}
