// Reads table inet plexd as LiveFirewall. Checking the table list first (cheap) keeps a
// missing table from being an nft error whose only signal would be stderr text.
import type { PrivConfig } from "../config.js";
import type { NftTool } from "../os/nft.js";
import { regularChainNames } from "./model.js";
import { hasPlexdTable, parseTable, type LiveFirewall } from "./parse.js";

export async function readLiveFirewall(nft: NftTool, cfg: Pick<PrivConfig, "chainName">, signal?: AbortSignal): Promise<LiveFirewall> {
  if (!hasPlexdTable(await nft.listTables(signal))) return { tableExists: false, chains: [] };
  return parseTable(await nft.listPlexdTable(signal), regularChainNames(cfg));
}
