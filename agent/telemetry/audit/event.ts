// The normalised audit event sent to the control plane, one NDJSON line each (docs/telemetry.md#audit).

export interface AuditEvent {
  timestamp: string;
  source: "auditd" | "k8s-audit";
  event_type: string;
  subject: Record<string, string | number | string[]>;
  object: Record<string, string>;
  action: string;
  result: "success" | "failure";
  hostname: string;
  raw: string;
}

/** `raw` and other free text are capped at 16 KiB (UTF-8), the cut marked with this suffix. */
export const rawCapBytes = 16 * 1024;
const suffix = "[truncated]";

/** Cuts `text` on a UTF-8 character boundary so that it plus `[truncated]` fits `capBytes`. */
export function capText(text: string, capBytes = rawCapBytes): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= capBytes) return text;
  let end = capBytes - suffix.length;
  // Back up over continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8") + suffix;
}
