import { timestampDate } from "@bufbuild/protobuf/wkt";
import { WatchResponseSchema, type WatchResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { jsonOptions } from "../format.js";
import { toJson } from "@bufbuild/protobuf";

export function watchLine(e: WatchResponse): string {
  const at = e.at === undefined ? "-" : timestampDate(e.at).toISOString();
  return `${at}  ${e.kind.padEnd(15)} ${e.subject}${e.detail ? `  ${e.detail}` : ""}`;
}

/** Streams AgentService.Watch until interrupted; JSON output is one message per line. */
export async function watch(client: NodeClient, json: boolean, kinds: string[], signal: AbortSignal): Promise<void> {
  // No deadline: a watch runs until the user stops it.
  const stream = client.agent.watch({ kinds }, { signal, timeoutMs: 0 });
  try {
    for await (const e of stream) console.log(json ? JSON.stringify(toJson(WatchResponseSchema, e, jsonOptions)) : watchLine(e));
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  }
}
