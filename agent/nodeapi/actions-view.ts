import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ExecutionSchema, HookInfoSchema, ListActionsResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { Actions } from "../actions/index.js";
import type { HookState } from "../hooks/hook-set.js";

// The node API's view of actions and hooks (ListActions, ListExecutions, ListHooks,
// VerifyHooks, ReloadHooks): the capability shapes plus, per hook, whether it can run now.

type HookInfo = MessageInitShape<typeof HookInfoSchema>;

function hookInfo(s: HookState, current = s.checksum, problem = s.problem): HookInfo {
  const ok = s.checksum !== "" && current === s.checksum && problem === "";
  return {
    name: s.def.name,
    description: s.def.description,
    path: s.def.path,
    announcedChecksum: s.checksum,
    currentChecksum: current,
    ok,
    available: s.checksum !== "",
    problem: problem !== "" ? problem : current !== s.checksum ? "checksum changed since the last scan" : "",
    parameters: s.def.parameters.map((p) => ({ name: p.name, type: p.type, required: p.required, default: p.default ?? "", description: p.description })),
    timeout: `${s.def.timeout.ms / 1000}s`,
    sandbox: s.def.sandbox,
    signed: s.signed,
  };
}

export function listActions(a: Actions): MessageInitShape<typeof ListActionsResponseSchema> {
  const caps = a.manager.capabilities().builtin_actions as { name: string; description: string; parameters: { name: string; type: string; required: boolean; default?: string; description: string }[] }[];
  return {
    builtinActions: caps.map((b) => ({ name: b.name, description: b.description, parameters: b.parameters.map((p) => ({ ...p, default: p.default ?? "" })) })),
    hooks: a.hooks.list().map((s) => hookInfo(s)),
  };
}

export function listExecutions(a: Actions): MessageInitShape<typeof ExecutionSchema>[] {
  return a.manager.executions().map((e) => ({
    executionId: e.execution_id,
    action: e.action,
    status: e.status,
    startedAt: timestampFromMs(e.started_at),
    duration: e.finished_at === undefined ? "" : `${((e.finished_at - e.started_at) / 1000).toFixed(2)}s`,
    exitCode: e.exit_code ?? 0,
    triggeredBy: e.triggered_by.type,
  }));
}

export const listHooks = (a: Actions): HookInfo[] => a.hooks.list().map((s) => hookInfo(s));

/** A fresh check of every hook file against what was announced. */
export async function verifyHooks(a: Actions, signal: AbortSignal): Promise<HookInfo[]> {
  const fresh = await a.hooks.check(signal);
  return a.hooks.list().map((s) => {
    const f = fresh.get(s.def.name);
    return hookInfo(s, f?.checksum ?? "", f?.problem ?? "not checked");
  });
}
