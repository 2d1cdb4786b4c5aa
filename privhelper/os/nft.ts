// nft runner: the only place privhelper invokes nft for the firewall. Reads use the JSON
// listing (structured, no text scraping); writes feed a script rendered by
// privhelper/firewall/render.ts on stdin, so one `nft -f` is one atomic transaction.
import type { Runner } from "./runner.js";

export interface NftTool {
  /** `nft -j list tables inet` output. */
  listTables(signal?: AbortSignal): Promise<string>;
  /** `nft -j list table inet plexd` output (fails when the table does not exist). */
  listPlexdTable(signal?: AbortSignal): Promise<string>;
  /** Run one script as one transaction; throws a CommandError carrying nft's stderr. */
  applyScript(script: string, signal?: AbortSignal): Promise<void>;
}

// Large tables (tens of thousands of rules) take seconds to list or load on a busy host.
const timeoutMs = 120_000;

export function nftTool(runner: Runner): NftTool {
  const opts = (signal?: AbortSignal) => ({ timeoutMs, ...(signal ? { signal } : {}) });
  return {
    async listTables(signal) {
      return (await runner.run("nft", ["-j", "list", "tables", "inet"], opts(signal))).stdout;
    },
    async listPlexdTable(signal) {
      return (await runner.run("nft", ["-j", "list", "table", "inet", "plexd"], opts(signal))).stdout;
    },
    async applyScript(script, signal) {
      await runner.run("nft", ["-f", "-"], { ...opts(signal), input: script });
    },
  };
}
