import { existsSync } from "node:fs";
import { parse } from "yaml";

// What an install needs besides the artifact, checked before anything changes: the bootstrap
// token, the configuration (an existing file or a minimal one from --api-url), and whether
// SSH access is on (then sshd gets a drop-in). Every problem is collected and reported
// together.

export const maxTokenBytes = 512;

/** The token as read from a file or stdin: one trailing newline dropped, then 1-512 printable ASCII characters. */
export function checkToken(raw: Buffer, from: string): { token?: string; problem?: string } {
  const text = raw.toString("latin1").replace(/\r?\n$/, "");
  if (text.length === 0) return { problem: `${from}: the bootstrap token is empty` };
  if (text.length > maxTokenBytes) return { problem: `${from}: the bootstrap token is ${text.length} bytes, at most ${maxTokenBytes} are allowed` };
  if (!/^[\x21-\x7e]+$/.test(text)) return { problem: `${from}: the bootstrap token must be printable ASCII without spaces or line breaks` };
  return { token: text };
}

export function checkApiUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `--api-url: not a URL: ${JSON.stringify(url)}`;
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") return `--api-url: must be an https:// URL, got ${JSON.stringify(url)}`;
  return undefined;
}

/** The minimal configuration `plexd install --api-url` writes when there is none. */
export function minimalConfig(apiUrl: string): string {
  return [
    "# plexd configuration, written by `plexd install`; every key and its default:",
    "# /usr/local/share/doc/plexd/README.md. Check a change with `plexd config check`,",
    "# apply it with `systemctl reload plexd` (or restart, for keys that say so).",
    `api: ${JSON.stringify(apiUrl)}`,
    "",
  ].join("\n");
}

export interface SshAccess {
  enabled: boolean;
  hostKeyFile: string;
}

/** access.ssh of a configuration text (enabled by default, as the agent reads it). */
export function sshAccess(configText: string, file: string): { ssh?: SshAccess; problem?: string } {
  let doc: unknown;
  try {
    doc = parse(configText);
  } catch (err) {
    return { problem: `${file}: not valid YAML: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}` };
  }
  const get = (o: unknown, k: string): unknown => (o !== null && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined);
  const ssh = get(get(doc, "access"), "ssh");
  const enabled = get(ssh, "enabled");
  const hostKey = get(ssh, "host_key_file");
  if (enabled !== undefined && typeof enabled !== "boolean") return { problem: `${file}: access.ssh.enabled must be true or false` };
  return { ssh: { enabled: enabled !== false, hostKeyFile: typeof hostKey === "string" ? hostKey : "/var/lib/plexd/ssh_host_key" } };
}

const standardHostKeys = ["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"];

/**
 * The sshd drop-in for SSH access through plexd: the agent's host key, the agent as the
 * source of authorized keys, and the session token let through to the shell. HostKey lines
 * replace sshd's default list, so the host's own keys present at install time are named too.
 * `root` is where to look for them ("/" on the host).
 */
export function sshdDropIn(ssh: SshAccess, root: string): string {
  const own = standardHostKeys.filter((k) => existsSync(root === "/" ? k : `${root}${k}`));
  return [
    "# Written by `plexd install` because SSH access (access.ssh.enabled) is on in",
    "# /etc/plexd/config.yaml; `plexd uninstall` removes it.",
    ...own.map((k) => `HostKey ${k}`),
    `HostKey ${ssh.hostKeyFile}`,
    "AuthorizedKeysCommand /usr/local/bin/plexd access authorized-keys %u %f",
    "AuthorizedKeysCommandUser plexd",
    "PermitUserEnvironment PLEXD_SESSION_TOKEN",
    "",
  ].join("\n");
}
