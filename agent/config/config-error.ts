// The one error a config load can end in. It lists every problem at once, as
// `<key path>: <message> (got <value>)` lines (docs/config-reference.md), and maps to exit
// code 2. It is a PlexdError (code invalid_argument) so generic handlers keep working.
import type * as z from "zod";
import { PlexdError } from "../../proto/lib/errors.js";

export interface ConfigIssue {
  /** Key path as written in the file (`mesh.listen_port`, `hooks.definitions[0].name`), an
   *  environment variable name, or `<file>[:line:col]` for read and YAML syntax errors. */
  readonly path: string;
  readonly message: string;
  /** The offending value, when there is one. */
  readonly received?: unknown;
  /** Where an overriding value came from (`env PLEXD_API`, `flag --api`), when not the file. */
  readonly origin?: string;
}

export const CONFIG_EXIT_CODE = 2;

export class ConfigError extends PlexdError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super("invalid_argument", `invalid configuration:\n${issues.map(formatIssue).join("\n")}`);
    this.name = "ConfigError";
    this.issues = Object.freeze([...issues]);
  }

  /** One line per issue. */
  format(): string {
    return this.issues.map(formatIssue).join("\n");
  }
}

export function formatIssue(i: ConfigIssue): string {
  let line = `${i.path === "" ? "(config)" : i.path}: ${i.message}`;
  if (i.received !== undefined) line += ` (got ${showValue(i.received)})`;
  if (i.origin !== undefined) line += ` [from ${i.origin}]`;
  return line;
}

const MAX_SHOWN = 120;

/** JSON of the value, shortened; never throws (cycles, bigints and binary data included). */
export function showValue(v: unknown): string {
  let s: string;
  try {
    s =
      JSON.stringify(v, (_k, x: unknown) => {
        if (typeof x === "bigint") return x.toString();
        if (x instanceof Uint8Array) return `<${x.length} bytes>`;
        if (x instanceof Map || x instanceof Set) return [...x];
        return x;
      }) ?? String(v);
  } catch {
    s = "<unprintable value>";
  }
  return s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN - 1)}…` : s;
}

export function keyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    // Keys that are not plain words (spaces, dots, empty) are quoted so the path stays readable.
    else if (typeof k !== "string" || !/^[A-Za-z0-9_-]+$/.test(k)) out += `[${JSON.stringify(String(k))}]`;
    else out += out === "" ? k : `.${k}`;
  }
  return out;
}

// Safety net for any zod issue that escaped a custom message: operators never see zod jargon.
const fallbackByCode: Record<string, string> = {
  invalid_type: "has the wrong type",
  too_big: "is too large",
  too_small: "is too small",
  invalid_format: "has the wrong format",
  not_multiple_of: "has an invalid value",
  invalid_value: "has an invalid value",
  invalid_union: "has an invalid value",
  invalid_key: "has an invalid key",
  invalid_element: "has an invalid element",
  custom: "is invalid",
};

function looksLikeZodDefault(message: string): boolean {
  return /^(Invalid|Too (big|small)|Unrecognized|Expected|Input not instance)/.test(message);
}

export function issuesFromZod(issues: readonly z.core.$ZodIssue[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const iss of issues) {
    if (iss.code === "unrecognized_keys") {
      for (const k of iss.keys) out.push({ path: keyPath([...iss.path, k]), message: "unknown key" });
      continue;
    }
    let received: unknown = iss.input;
    if (iss.code === "invalid_union" && "discriminator" in iss && typeof iss.discriminator === "string") {
      // Report the discriminator's own value, not the whole item.
      received = typeof iss.input === "object" && iss.input !== null ? (iss.input as Record<string, unknown>)[iss.discriminator] : iss.input;
    }
    let message = looksLikeZodDefault(iss.message) ? (fallbackByCode[iss.code] ?? "is invalid") : iss.message;
    if (received === undefined && iss.code !== "custom") message = "required";
    const issue: ConfigIssue = received === undefined ? { path: keyPath(iss.path), message } : { path: keyPath(iss.path), message, received };
    out.push(issue);
  }
  return out;
}
