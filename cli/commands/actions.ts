import { create } from "@bufbuild/protobuf";
import { ListActionsResponseSchema, ListExecutionsResponseSchema, ListHooksResponseSchema, type HookInfo, type ListActionsResponse, type ListExecutionsResponse } from "../../proto/gen/plexd/node/v1/node_pb.js";
import type { NodeClient } from "../client.js";
import { exitCodes } from "../exit-codes.js";
import { age, messageJson, table } from "../format.js";

// `plexd actions` and `plexd hooks list|verify|reload` (docs/actions.md): what this node can
// run, what ran lately, and whether each declared hook's file still matches what was announced.

const params = (ps: { name: string; type: string; required: boolean; default: string }[]): string =>
  ps.length === 0 ? "-" : ps.map((p) => `${p.name}:${p.type}${p.required ? "!" : p.default !== "" ? `=${p.default}` : ""}`).join(" ");

export function hooksText(hooks: readonly HookInfo[]): string {
  if (hooks.length === 0) return "no hooks declared (hooks.definitions)";
  return table(
    ["HOOK", "SANDBOX", "TIMEOUT", "CHECKSUM", "OK", "PROBLEM"],
    hooks.map((h) => [h.name, h.sandbox, h.timeout, h.announcedChecksum === "" ? "-" : h.announcedChecksum.slice(0, 19), h.ok ? "yes" : "no", h.problem || "-"]),
  );
}

export function actionsText(res: ListActionsResponse, ex: ListExecutionsResponse, now: number): string {
  const out = [table(["ACTION", "PARAMETERS", "DESCRIPTION"], [...res.builtinActions.map((a) => [a.name, params(a.parameters), a.description]), ...res.hooks.map((h) => [`hooks/${h.name}`, params(h.parameters), h.available ? h.description || "-" : `unavailable: ${h.problem}`])])];
  if (ex.executions.length > 0) {
    out.push("", table(["EXECUTION", "ACTION", "STATUS", "EXIT", "STARTED", "DURATION", "BY"], ex.executions.map((e) => [e.executionId, e.action, e.status, e.status === "running" ? "-" : String(e.exitCode), age(e.startedAt, now), e.duration || "-", e.triggeredBy])));
  }
  return out.join("\n");
}

export async function actions(client: NodeClient, json: boolean): Promise<void> {
  const [res, ex] = await Promise.all([client.agent.listActions({}), client.agent.listExecutions({})]);
  console.log(json ? JSON.stringify({ ...JSON.parse(messageJson(ListActionsResponseSchema, res)), ...JSON.parse(messageJson(ListExecutionsResponseSchema, ex)) }, null, 2) : actionsText(res, ex, Date.now()));
}

/** list, verify (fresh check; exit 8 when a hook is not ok) or reload (rescan and announce). */
export async function hooks(client: NodeClient, json: boolean, what: "list" | "verify" | "reload"): Promise<void> {
  const res = what === "list" ? await client.agent.listHooks({}) : what === "verify" ? await client.agent.verifyHooks({}) : await client.agent.reloadHooks({});
  // The three answers have the same shape: {hooks}.
  console.log(json ? messageJson(ListHooksResponseSchema, create(ListHooksResponseSchema, { hooks: res.hooks })) : hooksText(res.hooks));
  if (what === "verify" && res.hooks.some((h) => !h.ok)) process.exitCode = exitCodes.integrity;
}
