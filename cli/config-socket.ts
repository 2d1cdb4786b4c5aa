import { readFile } from "node:fs/promises";

// Which node API socket a client command talks to (docs/config-reference.md): `--socket`,
// else PLEXD_NODE_API_SOCKET, else `node_api.socket` from the configuration file (`--config`,
// PLEXD_CONFIG, /etc/plexd/config.yaml), else the default. The file is only read for that one
// key: it may belong to another user or be invalid, and a client command must still work
// (a missing or unreadable file means the default), so nothing here validates the rest.

export const defaultSocket = "/run/plexd/api.sock";

export async function socketFromConfig(file: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return undefined;
  }
  // Most files never set it; skip loading the YAML parser then (plexd status start-up time).
  if (!/\bnode_api\b/.test(text) || !/\bsocket\b/.test(text)) return undefined;
  const { parse } = await import("yaml");
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    return undefined;
  }
  const api = (doc as { node_api?: unknown } | null)?.node_api;
  const socket = typeof api === "object" && api !== null ? (api as { socket?: unknown }).socket : undefined;
  return typeof socket === "string" && socket.startsWith("/") ? socket : undefined;
}
