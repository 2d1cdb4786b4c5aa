// What an action looks like to admission, the capability announcement and `plexd actions`:
// built-ins and declared hooks share one shape (the control plane's ParameterDef).

export type ParamType = "string" | "bool" | "int";

export interface ParamDef {
  readonly name: string;
  readonly type: ParamType;
  readonly required: boolean;
  /** Text, as hooks receive it; absent when the parameter has no default. */
  readonly default?: string;
  readonly description: string;
  /** Bounds of an `int` parameter, inclusive (built-ins only). */
  readonly min?: number;
  readonly max?: number;
  /** A `string` parameter's form (built-ins only), with what to say when it does not match. */
  readonly pattern?: { re: RegExp; message: string };
}

export interface ActionDef {
  /** `system.info`, or `hooks/<name>` for a hook. */
  readonly name: string;
  readonly type: "builtin" | "hook";
  readonly description: string;
  readonly parameters: readonly ParamDef[];
}

/** ParameterDef as the capability announcement carries it (bounds are the agent's own business). */
export function announcedParam(p: ParamDef): { name: string; type: ParamType; required: boolean; default?: string; description: string } {
  return { name: p.name, type: p.type, required: p.required, ...(p.default === undefined ? {} : { default: p.default }), description: p.description };
}

const int64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n };

/** Problems of `raw` against `defs`, one line each; `values` gets every parameter as text, defaults applied. */
export function checkParameters(defs: readonly ParamDef[], raw: Record<string, unknown>, values: Record<string, string>): string[] {
  const problems: string[] = [];
  const byName = new Map(defs.map((d) => [d.name, d]));
  for (const [name, v] of Object.entries(raw)) {
    const def = byName.get(name);
    if (def === undefined) {
      problems.push(`${name}: not a parameter of this action`);
      continue;
    }
    if (typeof v !== "string" && typeof v !== "boolean" && !(typeof v === "number" && Number.isFinite(v))) {
      problems.push(`${name}: must be a string, number or boolean`);
      continue;
    }
    const text = String(v);
    // Hooks get parameters as environment variables, which cannot hold a NUL byte.
    if (text.includes("\0")) {
      problems.push(`${name}: must not contain a NUL character`);
      continue;
    }
    const problem = typeProblem(def, text);
    if (problem !== undefined) problems.push(`${name}: ${problem}`);
    else values[name] = text;
  }
  for (const d of defs) {
    if (d.name in raw) continue;
    if (d.required) problems.push(`${d.name}: required`);
    else if (d.default !== undefined) values[d.name] = d.default;
  }
  return problems;
}

function typeProblem(def: ParamDef, text: string): string | undefined {
  if (def.type === "bool") return text === "true" || text === "false" ? undefined : "must be true or false";
  if (def.type === "string") return def.pattern === undefined || def.pattern.re.test(text) ? undefined : def.pattern.message;
  if (!/^-?\d{1,20}$/.test(text)) return "must be a decimal integer";
  const n = BigInt(text);
  if (n < int64.min || n > int64.max) return "must fit in 64 bits";
  if ((def.min !== undefined && n < BigInt(def.min)) || (def.max !== undefined && n > BigInt(def.max))) return `must be between ${def.min ?? "-∞"} and ${def.max ?? "∞"}`;
  return undefined;
}
