import net from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ActionService } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { exitCodes } from "../exit-codes.js";
import { UsageError } from "../usage-error.js";

// `plexd actions run NAME [--param k=v]... [--timeout D] [--local]` over the actions socket
// (docs/actions.md "Local runs"): the same admission as a control-plane request; prints the
// execution id, then the action's stdout (to stdout) and stderr (to stderr). Exit code 0 for
// status success, 1 for anything else. Without --local, PLEXD_SESSION_TOKEN authorizes the run.

export function parseParams(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf("=");
    if (i <= 0) throw new UsageError(`--param ${JSON.stringify(p)}: expected name=value`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

export async function actionsRun(socket: string, name: string, o: { params: string[]; timeout?: string; local: boolean }, json: boolean): Promise<void> {
  const transport = createGrpcTransport({ baseUrl: "http://localhost", nodeOptions: { createConnection: () => net.connect(socket) } });
  const client = createClient(ActionService, transport);
  const parameters = parseParams(o.params);
  // Without --local the run is authorized by the access-proxy session's token, sent as a header
  // (never in argv, where other users could read it).
  const token = o.local ? undefined : process.env.PLEXD_SESSION_TOKEN?.trim();
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  for await (const ev of client.runAction({ name, parameters, timeout: o.timeout ?? "", local: o.local }, { headers })) {
    if (ev.event.case === "acceptedExecutionId") {
      if (!json) process.stderr.write(`accepted: ${ev.event.value}\n`);
      continue;
    }
    if (ev.event.case !== "result") continue;
    const r = ev.event.value;
    if (json) {
      console.log(JSON.stringify({ execution_id: r.executionId, status: r.status, exit_code: r.exitCode, stdout: r.stdout, stderr: r.stderr, duration: r.duration, finished_at: r.finishedAt ? new Date(timestampMs(r.finishedAt)).toISOString() : "" }, null, 2));
    } else {
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      process.stderr.write(`${r.status} (exit code ${r.exitCode}) in ${r.duration}\n`);
    }
    process.exitCode = r.status === "success" ? exitCodes.ok : exitCodes.error;
  }
}
