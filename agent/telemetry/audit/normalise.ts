// A grouped kernel audit event turned into the normalised event (docs/telemetry.md#audit).
import { capText, type AuditEvent } from "./event.js";
import type { GroupedEvent } from "./group.js";
import { fieldText, parseFields, typeName } from "./record.js";
import { syscallName } from "./syscalls.js";

const numeric = ["uid", "gid", "pid", "auid"] as const;

function result(fields: readonly Map<string, string>[]): "success" | "failure" | undefined {
  for (const f of fields) {
    const success = f.get("success");
    if (success === "yes") return "success";
    if (success === "no") return "failure";
    const res = fieldText("res", f.get("res"));
    if (res === "success" || res === "1") return "success";
    if (res === "failed" || res === "0") return "failure";
  }
  return undefined;
}

export function normaliseAuditd(ev: GroupedEvent, hostname: string): AuditEvent {
  const first = ev.records[0];
  const eventType = first ? typeName(first.type) : "EOE";
  const fields = ev.records.map((r) => parseFields(r.text));
  const subject: AuditEvent["subject"] = {};
  for (const key of numeric) {
    const f = fields.find((m) => /^\d+$/.test(m.get(key) ?? ""));
    if (f) subject[key] = Number(f.get(key));
  }
  for (const key of ["comm", "exe"] as const) {
    for (const f of fields) {
      const v = fieldText(key, f.get(key));
      if (v !== undefined) {
        subject[key] = v;
        break;
      }
    }
  }
  const pathIdx = ev.records.findIndex((r) => typeName(r.type) === "PATH");
  const name = pathIdx >= 0 ? fieldText("name", fields[pathIdx]!.get("name")) : undefined;
  const sysIdx = ev.records.findIndex((r) => typeName(r.type) === "SYSCALL");
  const nr = sysIdx >= 0 ? fields[sysIdx]!.get("syscall") : undefined;
  const raw = ev.records.map((r) => r.text).join("\n") + (ev.omitted > 0 ? `\n[${ev.omitted} more records omitted]` : "");
  return {
    timestamp: new Date(ev.ms).toISOString(),
    source: "auditd",
    event_type: eventType,
    subject,
    object: name !== undefined ? { path: name } : {},
    action: nr !== undefined && /^\d+$/.test(nr) ? syscallName(fields[sysIdx]!.get("arch"), Number(nr)) : eventType,
    // Neither success= nor res= (e.g. an AVC denial on its own): the kernel reports what it refused.
    result: result(fields) ?? (eventType === "AVC" ? "failure" : "success"),
    hostname,
    raw: capText(raw),
  };
}
