// One line of the Kubernetes API server's audit log (JSON lines, audit.k8s.io/v1 Event) turned
// into the normalised event. Only stages ResponseComplete and Panic are forwarded: one event
// per request (docs/telemetry.md#audit).
import { capText, type AuditEvent } from "./event.js";

export type K8sLine = { event: AuditEvent } | { skip: "stage" } | { malformed: string };

const forwarded = new Set(["ResponseComplete", "Panic"]);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

export function normaliseK8s(line: string, hostname: string): K8sLine {
  let ev: unknown;
  try {
    ev = JSON.parse(line);
  } catch (err) {
    return { malformed: `not JSON: ${(err as Error).message}` };
  }
  if (!isObj(ev)) return { malformed: "not a JSON object" };
  const stage = str(ev.stage);
  if (stage === undefined) return { malformed: "no stage" };
  if (!forwarded.has(stage)) return { skip: "stage" };
  const verb = str(ev.verb);
  if (verb === undefined) return { malformed: "no verb" };
  const when = str(ev.stageTimestamp) ?? str(ev.requestReceivedTimestamp);
  const ms = when === undefined ? NaN : Date.parse(when);
  if (Number.isNaN(ms)) return { malformed: "no valid stageTimestamp or requestReceivedTimestamp" };
  const user = isObj(ev.user) ? ev.user : {};
  const ref = isObj(ev.objectRef) ? ev.objectRef : {};
  const code = isObj(ev.responseStatus) && typeof ev.responseStatus.code === "number" ? ev.responseStatus.code : undefined;
  const object: Record<string, string> = {};
  const resource = str(ref.resource);
  if (resource !== undefined) object.resource = str(ref.subresource) ? `${resource}/${str(ref.subresource)}` : resource;
  for (const k of ["namespace", "name"] as const) {
    const v = str(ref[k]);
    if (v !== undefined) object[k] = v;
  }
  object.request_uri = str(ev.requestURI) ?? "";
  const subject: AuditEvent["subject"] = {};
  const username = str(user.username);
  if (username !== undefined) subject.username = username;
  if (Array.isArray(user.groups)) subject.groups = user.groups.filter((g): g is string => typeof g === "string");
  return {
    event: {
      timestamp: new Date(ms).toISOString(),
      source: "k8s-audit",
      event_type: verb,
      subject,
      object,
      action: verb,
      result: code !== undefined && code >= 200 && code < 300 ? "success" : "failure",
      hostname,
      raw: capText(line),
    },
  };
}
