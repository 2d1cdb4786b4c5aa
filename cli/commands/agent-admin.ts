import { DeregisterResponseSchema, ReloadConfigResponseSchema, SetLogLevelResponseSchema, type ReloadConfigResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { isUnreachable, type NodeClient } from "../client.js";
import { messageJson } from "../format.js";

// Commands that change the running agent (the node API's admin class: root or user plexd).

export function reloadText(r: ReloadConfigResponse): string {
  const list = (xs: string[]): string => (xs.length === 0 ? "none" : xs.join(", "));
  return `configuration reloaded\napplied: ${list(r.applied)}\nrestart required: ${list(r.restartRequired)}`;
}

export async function reload(client: NodeClient, json: boolean): Promise<void> {
  const res = await client.agent.reloadConfig({});
  console.log(json ? messageJson(ReloadConfigResponseSchema, res) : reloadText(res));
}

export async function logLevel(client: NodeClient, json: boolean, level: string): Promise<void> {
  const res = await client.agent.setLogLevel({ level });
  console.log(json ? messageJson(SetLogLevelResponseSchema, res) : `log level ${res.level} (was ${res.previous}) until the next reload or restart`);
}

/** Stopping the loops, telling the control plane and the teardown take their time: not the usual 10 s. */
const deregisterTimeoutMs = 120_000;

/** Through the running agent; "no_agent" when none answers on the socket (the caller goes offline). */
export async function deregister(client: NodeClient, json: boolean, opts: { purge: boolean; force: boolean }): Promise<"done" | "no_agent"> {
  let res;
  try {
    res = await client.agent.deregister(opts, { timeoutMs: deregisterTimeoutMs });
  } catch (err) {
    if (isUnreachable(err)) return "no_agent";
    throw err;
  }
  if (res.errors.length > 0) process.stderr.write(`plexd: teardown reported: ${res.errors.join("; ")}\n`);
  console.log(json ? messageJson(DeregisterResponseSchema, res) : `deregistered node ${res.nodeId}${res.purged ? " (identity and state purged)" : ""}; the agent stops`);
  return "done";
}
