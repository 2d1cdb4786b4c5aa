// The short-lived SNAT that lets StunProbe speak from the WireGuard port (bridge spec §1.2).
// The WireGuard device owns UDP mesh.listen_port, so privhelper's own socket binds another
// port and, for the duration of one probe, a dedicated table rewrites exactly that socket's
// datagrams to the server so they leave from <source ip>:<listen_port>. Conntrack keeps the
// binding for the reply and de-NATs it back to the probe socket. The table is removed right
// after the probe. Everything is rendered here from validated numbers and addresses.
import type { Runner } from "./run.js";

export const stunTable = "plexd_stun";

export interface StunSnat {
  /** The probe socket's source address and port (after connect). */
  localIp: string;
  localPort: number;
  server: string;
  serverPort: number;
  /** The WireGuard port the datagram must appear to come from. */
  meshPort: number;
}

// "table; delete table; table {...}" replaces a leftover table (e.g. after a crash) in the same
// atomic transaction instead of failing on it.
const header = `table ip ${stunTable}\ndelete table ip ${stunTable}\n`;

export function renderStunSnat(s: StunSnat): string {
  return (
    header +
    `table ip ${stunTable} {\n` +
    `  chain postrouting {\n` +
    `    type nat hook postrouting priority srcnat; policy accept;\n` +
    `    ip saddr ${s.localIp} ip daddr ${s.server} udp sport ${s.localPort} udp dport ${s.serverPort} snat to ${s.localIp}:${s.meshPort}\n` +
    `  }\n` +
    `}\n`
  );
}

/** Removes table ip plexd_stun whether or not it exists. */
export const removeStunSnatScript = header;

const opts = (signal?: AbortSignal) => ({ timeoutMs: 10_000, ...(signal ? { signal } : {}) });

export async function applyStunSnat(runner: Runner, s: StunSnat, signal?: AbortSignal): Promise<void> {
  await runner.run("nft", ["-f", "-"], { ...opts(signal), input: renderStunSnat(s) });
}

export async function removeStunSnat(runner: Runner, signal?: AbortSignal): Promise<void> {
  await runner.run("nft", ["-f", "-"], { ...opts(signal), input: removeStunSnatScript });
}

/**
 * Teardown and --cleanup: a privhelper killed mid-probe leaves its table behind (the next probe
 * would replace it, but there may be none). Looked up first so that only a table that exists is
 * deleted and reported; the name and family are exactly plexd's, so `inet plexd_stun` or any
 * other table is never touched. Returns whether one was removed.
 */
export async function removeStrayStunSnat(runner: Runner, signal?: AbortSignal): Promise<boolean> {
  const listed = await runner.run("nft", ["list", "table", "ip", stunTable], { ...opts(signal), allowFailure: true });
  if (listed.exitCode !== 0) return false;
  await runner.run("nft", ["delete", "table", "ip", stunTable], opts(signal));
  return true;
}
