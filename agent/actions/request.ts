import { z } from "zod";
import { tryParseWireDuration } from "../../proto/lib/duration.js";

// The action_request payload (docs/actions.md). A payload that cannot name its execution — no
// usable execution_id — is logged and never acknowledged: there is nothing to answer to.

export interface TriggeredBy {
  type: string;
  session_id: string;
  user_id: string;
  email: string;
}

export interface ActionRequest {
  execution_id: string;
  action: string;
  type: "builtin" | "hook";
  parameters: Record<string, unknown>;
  /** Requested timeout in ms, when given. */
  timeoutMs?: number;
  checksum?: string;
  triggered_by: TriggeredBy;
}

/** 1–128 characters; no control characters, no slash (it names a file and a URL path segment). */
export function isExecutionId(id: string): boolean {
  return id.length >= 1 && id.length <= 128 && id !== "." && id !== ".." && ![...id].some((c) => c === "/" || c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
}

const triggeredBy = z
  .object({ type: z.string().nullish(), session_id: z.string().nullish(), user_id: z.string().nullish(), email: z.string().nullish() })
  .nullish()
  .transform((t): TriggeredBy => ({ type: t?.type || "control_plane", session_id: t?.session_id ?? "", user_id: t?.user_id ?? "", email: t?.email ?? "" }));

const payloadSchema = z.object({
  execution_id: z.string().refine(isExecutionId, "must be 1–128 characters, without control characters or /, and not . or .."),
  action: z.string(),
  type: z.string(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  timeout: z.string().nullish(),
  checksum: z.string().nullish(),
  callback_url: z.unknown().optional(),
  triggered_by: triggeredBy,
});

/** The request, or the problems that keep it from being acknowledged at all. */
export type Parsed = { ok: true; request: ActionRequest; problems: string[] } | { ok: false; problems: string[] };

/**
 * Only a missing or unusable execution_id stops the ack; every other flaw is reported in
 * `problems` and answered by admission (`invalid_parameters`, `unknown_action`).
 */
export function parseActionRequest(payload: unknown): Parsed {
  const r = payloadSchema.safeParse(payload);
  const idIssue = r.success ? undefined : r.error.issues.find((i) => i.path[0] === "execution_id");
  if (!r.success && (idIssue !== undefined || typeof payload !== "object" || payload === null)) {
    return { ok: false, problems: r.error.issues.map((i) => `${i.path.join(".") || "payload"}: ${i.message}`) };
  }
  const p = (r.success ? r.data : payload) as Record<string, unknown>;
  const problems = r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  let timeoutMs: number | undefined;
  if (typeof p.timeout === "string" && p.timeout !== "") {
    const d = tryParseWireDuration(p.timeout);
    if (d === undefined || d <= 0) problems.push(`timeout: not a positive duration (${JSON.stringify(p.timeout)})`);
    else timeoutMs = d;
  }
  const type = p.type === "builtin" || p.type === "hook" ? p.type : "builtin";
  const request: ActionRequest = {
    execution_id: p.execution_id as string,
    action: typeof p.action === "string" ? p.action : "",
    type,
    parameters: typeof p.parameters === "object" && p.parameters !== null && !Array.isArray(p.parameters) ? (p.parameters as Record<string, unknown>) : {},
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(typeof p.checksum === "string" && p.checksum !== "" ? { checksum: p.checksum } : {}),
    triggered_by: r.success ? r.data.triggered_by : triggeredBy.parse(undefined),
  };
  if (p.type !== "builtin" && p.type !== "hook") problems.push(`type: must be builtin or hook`);
  return { ok: true, request, problems };
}
