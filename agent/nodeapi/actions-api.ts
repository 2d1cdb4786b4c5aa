import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ActionService, type RunActionResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { tryParseWireDuration } from "../../proto/lib/duration.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Actions } from "../actions/index.js";
import type { TriggeredBy } from "../actions/request.js";
import type { Logger } from "../util/log.js";
import type { AgentContext } from "../system.js";
import { defaultAccessPolicy, lookupGroupId, procGroups, type Caller } from "./access.js";
import { startNodeApi, type NodeApiServer } from "./server.js";
import { stream } from "./services.js";

// The actions socket (docs/actions.md "Local runs"): ActionService.RunAction only, for
// `plexd actions run`. Local runs take exactly the admission, integrity, sandbox and result
// path of remote ones, with execution ids local_<uuid>, no ack, and their result sent to the
// control plane with triggered_by (queued while it is offline). The socket is 0666: every call
// authorizes itself. `--local` (local_emergency) is for uid 0 and the plexd user — with
// actions.local_auth.require_root off, also members of group plexd. Without --local a run needs
// a session token (`authorization: Bearer <PLEXD_SESSION_TOKEN>`) that covers the action; a
// call with neither is a direct access: refused, and the attempt reported to the control plane.

async function authorizeLocal(caller: Caller | undefined, requireRoot: boolean): Promise<number> {
  if (caller?.transport !== "unix" || caller.cred === undefined) throw new PlexdError("permission_denied", "unauthorized: the caller's credentials cannot be read");
  const { uid, gid, pid } = caller.cred;
  // uid 0, the plexd user and the agent's own uid, as for the node API's admin class.
  if (uid === 0 || defaultAccessPolicy().adminUids.includes(uid)) return uid;
  const group = lookupGroupId("plexd");
  if (!requireRoot && group !== undefined && (gid === group || (await procGroups(pid).catch(() => [] as number[])).includes(group))) return uid;
  throw new PlexdError("permission_denied", `unauthorized: --local runs need uid 0 or the plexd user${requireRoot ? "" : " or group plexd"}`);
}

/** A run without --local: the session token must verify and cover the action; without one it is a direct access. */
async function authorizeSession(actions: Actions, action: string, header: string, uid: number, log: Logger): Promise<TriggeredBy> {
  const token = /^Bearer (\S+)$/i.exec(header.trim())?.[1];
  if (token === undefined) {
    log.warn({ action, uid, triggered_by: "direct_access" }, "local action refused: no session token");
    actions.reportDirectAccess(action, uid);
    throw new PlexdError("permission_denied", "unauthorized: no session token: run it from an access-proxy session (PLEXD_SESSION_TOKEN set), or as root or plexd with --local");
  }
  const v = await actions.sessions.verify(token, action);
  if (!v.ok) {
    log.warn({ action, uid, reason: v.reason }, "local action refused: session token not accepted");
    throw new PlexdError("permission_denied", `unauthorized: ${v.reason}`);
  }
  return { type: "session", session_id: v.claims.session_id, user_id: v.claims.sub, email: v.claims.email };
}

export async function startActionsApi(ctx: AgentContext, actions: Actions, signal: AbortSignal): Promise<NodeApiServer> {
  const log = ctx.log.child({ component: "actions-api" });
  const runAction = stream(ActionService.method.runAction, "reader", async function* (req, call): AsyncIterable<MessageInitShape<typeof RunActionResponseSchema>> {
    const uid = call.caller?.transport === "unix" ? (call.caller.cred?.uid ?? -1) : -1;
    const triggeredBy = req.local ? await authorizeLocal(call.caller, ctx.config.actions.local_auth.require_root).then((u) => ({ type: "local_emergency" as const, session_id: "", user_id: String(u), email: "" })) : await authorizeSession(actions, req.name, call.headers?.get("authorization") ?? "", uid, log);
    let timeoutMs: number | undefined;
    if (req.timeout !== "") {
      timeoutMs = tryParseWireDuration(req.timeout);
      if (timeoutMs === undefined || timeoutMs <= 0) throw new PlexdError("invalid_argument", `invalid_parameters: timeout: not a duration (${JSON.stringify(req.timeout)})`);
    }
    log.info({ action: req.name, uid, triggered_by: triggeredBy.type, session_id: triggeredBy.session_id }, "local action requested");
    const run = await actions.manager.runLocal({
      name: req.name,
      parameters: { ...req.parameters },
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      triggeredBy,
    });
    yield { event: { case: "acceptedExecutionId", value: run.executionId } };
    const r = await run.result;
    yield { event: { case: "result", value: { executionId: r.execution_id, status: r.status, exitCode: r.exit_code, stdout: r.stdout, stderr: r.stderr, duration: r.duration, finishedAt: timestampFromMs(Date.parse(r.finished_at)) } } };
  });
  const socketPath = ctx.config.actions.socket;
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  return startNodeApi({ socketPath, backend: undefined as never, log, signal, ops: [runAction], reflect: [ActionService], socketMode: 0o666 });
}
