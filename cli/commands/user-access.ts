// `plexd bridge user-config` and `plexd bridge users` (docs/bridge.md#user-access): a user's
// wg-quick configuration, rendered from what the bridge's node API answers, and the clients with
// their handshakes and traffic. The client's private key never passes through argv: it is a
// placeholder, or read from a file the user owns (`--private-key-file`).
import { readFile, stat } from "node:fs/promises";
import { GetUserAccessConfigResponseSchema, ListUserAccessPeersResponseSchema, type GetUserAccessConfigResponse, type ListUserAccessPeersResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { isKey32 } from "../../proto/lib/keys.js";
import { parseHostPort } from "../../proto/lib/net.js";
import type { NodeClient } from "../client.js";
import { age, bytes, messageJson, table } from "../format.js";
import { UsageError } from "../usage-error.js";

export const privateKeyPlaceholder = "<the private key of this device: wg genkey>";

/** The wg-quick file for one client; `privateKey` undefined leaves the placeholder. */
export function userConfigText(r: GetUserAccessConfigResponse, endpoint: string, privateKey: string | undefined): string {
  const lines = [
    `# plexd user access: ${r.label || r.publicKey} (public key ${r.publicKey})`,
    "[Interface]",
    `PrivateKey = ${privateKey ?? privateKeyPlaceholder}`,
    `Address = ${r.addresses.join(", ")}`,
    "",
    "[Peer]",
    `PublicKey = ${r.serverPublicKey}`,
    ...(r.presharedKey !== "" ? [`PresharedKey = ${r.presharedKey}`] : []),
    `Endpoint = ${endpoint}`,
    `AllowedIPs = ${r.allowedIps.join(", ")}`,
    ...(r.persistentKeepalive > 0 ? [`PersistentKeepalive = ${r.persistentKeepalive}`] : []),
  ];
  return lines.join("\n") + "\n";
}

/** The user's private key from a file only its owner can read (like wg's own key files). */
export async function readPrivateKeyFile(path: string): Promise<string> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`--private-key-file: ${path}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  if ((st.mode & 0o077) !== 0) throw new UsageError(`--private-key-file: ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  const key = (await readFile(path, "utf8")).trim();
  if (!isKey32(key)) throw new UsageError(`--private-key-file: ${path} does not hold a WireGuard private key (wg genkey)`);
  return key;
}

export interface UserConfigOptions {
  endpoint?: string;
  privateKeyFile?: string;
  qr: boolean;
}

export async function userConfig(client: NodeClient, json: boolean, user: string, opts: UserConfigOptions): Promise<void> {
  if (opts.endpoint !== undefined && parseHostPort(opts.endpoint, { names: true }) === undefined) throw new UsageError(`--endpoint: expected host:port, got ${JSON.stringify(opts.endpoint)}`);
  const privateKey = opts.privateKeyFile === undefined ? undefined : await readPrivateKeyFile(opts.privateKeyFile);
  const r = await client.agent.getUserAccessConfig({ user });
  if (json) {
    console.log(messageJson(GetUserAccessConfigResponseSchema, r));
    return;
  }
  const endpoint = opts.endpoint ?? r.endpoint;
  if (endpoint === "") throw new UsageError(`the bridge knows no public address of its own (no NAT discovery result yet): give --endpoint HOST:${r.listenPort}`);
  const text = userConfigText(r, endpoint, privateKey);
  if (!opts.qr) {
    process.stdout.write(text);
    return;
  }
  // Loaded only here: the QR encoder is not needed by any other command.
  const { default: QRCode } = await import("qrcode");
  process.stdout.write(await QRCode.toString(text, { type: "terminal", small: true, errorCorrectionLevel: "L" }));
  if (privateKey === undefined) process.stderr.write("plexd: the QR code holds a placeholder instead of the private key; give --private-key-file to include it\n");
}

export function usersText(r: ListUserAccessPeersResponse, now: number): string {
  if (!r.enabled) return "user access does not run on this node";
  const head = `${r.interfaceName} on UDP ${r.listenPort}, public key ${r.publicKey}`;
  const rows = r.peers.map((p) => [p.label || "-", p.publicKey, p.allowedIps.join(", "), p.endpoint || "-", age(p.lastHandshake, now), bytes(p.rxBytes), bytes(p.txBytes)]);
  const refused = r.refused.map((x) => `refused ${x.label || x.publicKey}: ${x.reason}`);
  return [head, r.peers.length === 0 ? "no clients" : table(["LABEL", "PUBLIC KEY", "ADDRESSES", "ENDPOINT", "HANDSHAKE", "RX", "TX"], rows), ...refused].join("\n");
}

export async function users(client: NodeClient, json: boolean): Promise<void> {
  const r = await client.agent.listUserAccessPeers({});
  console.log(json ? messageJson(ListUserAccessPeersResponseSchema, r) : usersText(r, Date.now()));
}
