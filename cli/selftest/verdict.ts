// `plexd self-test` results: each check is ok, warn or fail; any fail makes the host not
// ready (exit 2), any warn degraded (exit 1), otherwise it is ready (exit 0). Which finding is
// a fail and which a warn is decided by each check (docs/self-test.md lists them).

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
}

export type Verdict = "ready" | "degraded" | "not_ready";

export const verdictExitCodes: Record<Verdict, number> = { ready: 0, degraded: 1, not_ready: 2 };

export function verdictOf(results: readonly CheckResult[]): Verdict {
  if (results.some((r) => r.status === "fail")) return "not_ready";
  if (results.some((r) => r.status === "warn")) return "degraded";
  return "ready";
}

/** `--json`: one object, the verdict and every check in the order they ran. */
export function toJson(results: readonly CheckResult[]): string {
  return JSON.stringify({ verdict: verdictOf(results), checks: results });
}

/** A plain table: check, status, detail; then the verdict. */
export function toTable(results: readonly CheckResult[]): string {
  const w = Math.max(5, ...results.map((r) => r.name.length));
  const lines = [`${"CHECK".padEnd(w)}  STATUS  DETAIL`, ...results.map((r) => `${r.name.padEnd(w)}  ${r.status.padEnd(6)}  ${r.detail}`)];
  const v = verdictOf(results);
  lines.push("", `verdict: ${v.replace("_", " ")} (exit ${verdictExitCodes[v]})`);
  return lines.join("\n") + "\n";
}
