// Building blocks shared by every config section: scalar types with operator-facing
// messages, the duration and size grammars of docs/config-reference.md, and the
// "rules" helper used for range and cross-field checks.
//
// Representation (decided for the whole config layer):
//   - durations parse to a frozen `Duration = { text, ms }`: `text` keeps what the operator
//     wrote (for `config.dump` and messages), `ms` is what code uses;
//   - sizes parse to `Size = { text, bytes }` for the same reason;
//   - everything else keeps its YAML key name (snake_case) so a key path in an error
//     message is exactly what the operator types into the file.
//
// Type checks (wrong type, bad enum value, malformed duration) always apply. Range, pattern
// and cross-field checks are written as section "rules" that run only while the section is
// enabled ("a disabled section may hold any well-typed values"). Rules run even when a
// sibling field failed its type check (zod `when`), and they skip any operand that is not
// well-typed, so one mistake never hides another.
import { posix } from "node:path";
import * as z from "zod";
import { parseDuration as parseDurationMs } from "../../proto/lib/duration.js";
import { parseCidr, parseHostPort } from "../../proto/lib/net.js";

export interface Duration {
  readonly text: string;
  readonly ms: number;
}

export interface Size {
  readonly text: string;
  readonly bytes: number;
}

/** A duration (`500ms`, `90s`, `1h30m`) with the text the operator wrote; bare numbers and fractions are rejected. */
export function parseDuration(text: string): Duration | undefined {
  const ms = parseDurationMs(text);
  return ms === undefined ? undefined : Object.freeze({ text, ms });
}

const sizeUnits: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** Sizes are integer bytes or strings with a K/M/G suffix (powers of 1024). */
export function parseSize(input: unknown): Size | undefined {
  if (typeof input === "number") {
    return Number.isSafeInteger(input) && input >= 0 ? Object.freeze({ text: String(input), bytes: input }) : undefined;
  }
  if (typeof input !== "string") return undefined;
  const m = /^(\d+)([KMG]?)$/.exec(input);
  if (m === null) return undefined;
  const bytes = Number(m[1]) * (sizeUnits[m[2] ?? ""] ?? Number.NaN);
  return Number.isSafeInteger(bytes) ? Object.freeze({ text: input, bytes }) : undefined;
}

// Messages: "required" when the key is absent, otherwise what the value must be.
const msg = (what: string) => (iss: { input?: unknown }) => (iss.input === undefined ? "required" : what);

export const str = () => z.string({ error: msg("must be a string") });
export const bool = () => z.boolean({ error: msg("must be true or false") });
export const int = () =>
  z.number({ error: msg("must be an integer") }).int({ error: "must be an integer" });
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: msg(`must be one of: ${values.join(", ")}`) });
}
export function list<T extends z.ZodType>(item: T) {
  return z.array(item, { error: msg("must be a list") });
}
export function section<S extends z.core.$ZodLooseShape>(shape: S) {
  return z.strictObject(shape, { error: msg("must be a mapping of keys") });
}

export const duration = () =>
  z
    .string({ error: msg("must be a duration string such as 30s or 1h30m (bare numbers are not allowed)") })
    .transform((text, ctx): Duration => {
      const d = parseDuration(text);
      if (d === undefined) {
        ctx.issues.push({
          code: "custom",
          input: text,
          message: "must be a duration such as 500ms, 30s or 1h30m (units ms, s, m, h)",
        });
        return z.NEVER;
      }
      return d;
    })
    .meta({ format: "duration" });

const sizeMessage = "must be a size in bytes or with suffix K, M or G (e.g. 512M)";

/** A size, or null when absent ("unlimited"). */
export const optionalSize = () =>
  z
    .union([z.string(), z.number(), z.null()], { error: sizeMessage })
    .transform((input, ctx): Size | null => {
      if (input === null) return null;
      const s = parseSize(input);
      if (s === undefined) {
        ctx.issues.push({ code: "custom", input, message: sizeMessage });
        return z.NEVER;
      }
      return s;
    })
    .prefault(null)
    .meta({ format: "size" });

/** `duration().prefault("30s")`: the default goes through the parser, so it is a Duration too. */
export const dur = (def: string) => duration().prefault(def);

// ---- value predicates shared by rules and by other modules -------------------------------

export function isAbsolutePath(p: string): boolean {
  return posix.isAbsolute(p) && !p.includes("\0");
}

/** True when `p` lies strictly inside directory `dir` after lexical normalisation. */
export function isInside(p: string, dir: string): boolean {
  const rel = posix.relative(posix.normalize(dir), posix.normalize(p));
  return rel !== "" && !rel.startsWith("..") && !posix.isAbsolute(rel);
}

export const envNameRe = /^[A-Z_][A-Z0-9_]*$/;
export const ifaceNameRe = /^[A-Za-z0-9_-]{1,15}$/;

// ---- rules ---------------------------------------------------------------------------------

export type Rec = Record<string, unknown>;
export type PathKey = string | number;

export function isRec(v: unknown): v is Rec {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
export function isDuration(v: unknown): v is Duration {
  return isRec(v) && typeof v.ms === "number" && typeof v.text === "string";
}

/** Reads a nested value by path, or undefined when any step is missing / not a mapping. */
export function at(v: unknown, path: readonly PathKey[]): unknown {
  let cur = v;
  for (const k of path) {
    if (typeof k === "number") {
      if (!Array.isArray(cur)) return undefined;
      cur = cur[k];
    } else {
      if (!isRec(cur)) return undefined;
      cur = cur[k];
    }
  }
  return cur;
}

export type Report = (path: readonly PathKey[], message: string, received?: unknown) => void;

/** Typed accessors and common checks over a partially-typed section value. */
export class Rules {
  constructor(
    readonly v: unknown,
    readonly report: Report,
  ) {}

  get(path: readonly PathKey[]): unknown {
    return at(this.v, path);
  }
  dur(path: readonly PathKey[]): Duration | undefined {
    const x = at(this.v, path);
    return isDuration(x) ? x : undefined;
  }
  int(path: readonly PathKey[]): number | undefined {
    const x = at(this.v, path);
    return typeof x === "number" && Number.isInteger(x) ? x : undefined;
  }
  str(path: readonly PathKey[]): string | undefined {
    const x = at(this.v, path);
    return typeof x === "string" ? x : undefined;
  }
  bool(path: readonly PathKey[]): boolean | undefined {
    const x = at(this.v, path);
    return typeof x === "boolean" ? x : undefined;
  }
  /** True only when the flag is literally `true`: a mistyped flag is reported by its own type check. */
  on(path: readonly PathKey[]): boolean {
    return this.bool(path) === true;
  }

  durAtLeast(path: readonly PathKey[], min: string): void {
    const d = this.dur(path);
    const m = parseDuration(min);
    if (d !== undefined && m !== undefined && d.ms < m.ms) this.report(path, `must be at least ${min}`, d.text);
  }
  durPositive(path: readonly PathKey[]): void {
    const d = this.dur(path);
    if (d !== undefined && d.ms <= 0) this.report(path, "must be greater than 0s", d.text);
  }
  durBetween(path: readonly PathKey[], min: string, max: string): void {
    const d = this.dur(path);
    const lo = parseDuration(min);
    const hi = parseDuration(max);
    if (d !== undefined && lo !== undefined && hi !== undefined && (d.ms < lo.ms || d.ms > hi.ms)) {
      this.report(path, `must be ${min}–${max}`, d.text);
    }
  }
  intRange(path: readonly PathKey[], min: number, max: number): void {
    const n = this.int(path);
    if (n !== undefined && (n < min || n > max)) this.report(path, `must be ${min}–${max}`, n);
  }
  port(path: readonly PathKey[]): void {
    this.intRange(path, 1, 65535);
  }
  intAtLeast(path: readonly PathKey[], min: number): void {
    const n = this.int(path);
    if (n !== undefined && n < min) this.report(path, `must be at least ${min}`, n);
  }
  absPath(path: readonly PathKey[], opts: { allowEmpty?: boolean } = {}): void {
    const s = this.str(path);
    if (s === undefined || (opts.allowEmpty === true && s === "")) return;
    if (!isAbsolutePath(s)) this.report(path, opts.allowEmpty === true ? "must be empty or an absolute path" : "must be an absolute path", s);
  }
  pathInside(path: readonly PathKey[], dir: string): void {
    const s = this.str(path);
    if (s === undefined) return;
    if (!isAbsolutePath(s) || !isInside(s, dir)) this.report(path, `must be an absolute path inside ${dir}`, s);
  }
  match(path: readonly PathKey[], re: RegExp, message: string): void {
    const s = this.str(path);
    if (s !== undefined && !re.test(s)) this.report(path, message, s);
  }
  hostPort(path: readonly PathKey[]): void {
    const s = this.str(path);
    if (s !== undefined && parseHostPort(s, { names: true }) === undefined) this.report(path, "must be host:port with a port 1–65535", s);
  }
  cidrs(path: readonly PathKey[]): void {
    const xs = at(this.v, path);
    if (!Array.isArray(xs)) return;
    xs.forEach((x, i) => {
      if (typeof x === "string" && parseCidr(x, false) === undefined) this.report([...path, i], "must be a CIDR such as 10.0.0.0/24", x);
    });
  }
}

/**
 * Attaches section rules. `when: () => true` makes zod run them even when some field of the
 * section failed its type check, so the operator sees every problem in one go.
 */
export function withRules<T extends z.ZodType>(schema: T, rules: (r: Rules) => void): T {
  return schema.superRefine(
    (v, ctx) => {
      if (!isRec(v)) return;
      rules(
        new Rules(v, (path, message, received) => {
          ctx.addIssue({ code: "custom", path: [...path], message, input: received });
        }),
      );
    },
    { when: () => true },
  ) as unknown as T;
}
