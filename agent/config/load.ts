// Loads the configuration once (docs/config-reference.md): YAML file, then environment
// variables, then CLI flags, over built-in defaults. Every problem found on the way is
// collected into one ConfigError; nothing else is ever thrown.
import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import { ConfigError, type ConfigIssue } from "./config-error.js";
import { readEnvOverrides } from "./env.js";
import { at, isDuration, isRec } from "./schema-common.js";
import { type Config, parseConfig } from "./schema.js";

export { ConfigError, type ConfigIssue, CONFIG_EXIT_CODE } from "./config-error.js";
export type { Config } from "./schema.js";

export const DEFAULT_CONFIG_FILE = "/etc/plexd/config.yaml";

export type ConfigSource = "default" | "file" | "env" | "flag";

export interface ConfigFlags {
  api?: string;
  mode?: string;
  logLevel?: string;
}

export interface LoadOptions {
  /** Explicit file (`--config`); else PLEXD_CONFIG; else /etc/plexd/config.yaml. */
  file?: string;
  /** Environment to read overrides from; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  flags?: ConfigFlags;
}

export interface LoadedConfig {
  readonly config: Config;
  readonly file: string;
  /** Where each leaf value came from, by key path (`mesh.listen_port`). Durations, lists and
   *  string maps (registration.metadata) count as leaves. */
  readonly sources: Readonly<Record<string, ConfigSource>>;
}

export function resolveConfigFile(opts: { file?: string; env?: NodeJS.ProcessEnv }): string {
  if (opts.file !== undefined && opts.file !== "") return opts.file;
  const fromEnv = (opts.env ?? process.env).PLEXD_CONFIG;
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : DEFAULT_CONFIG_FILE;
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const file = resolveConfigFile(opts);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    throw new ConfigError([{ path: file, message: `cannot read: ${code}` }]);
  }
  return parseConfigText(text, file, opts);
}

/** Same as loadConfig for text already in memory (`file` names it in messages). */
export function parseConfigText(text: string, file: string, opts: Omit<LoadOptions, "file"> = {}): LoadedConfig {
  const doc = decodeYaml(text, file);
  const env = readEnvOverrides(opts.env ?? process.env);

  // Overrides, lowest first so that a flag wins over the variable for the same key.
  const overrides: { path: readonly string[]; value: unknown; source: "env" | "flag"; origin: string }[] = [];
  for (const v of env.values) overrides.push({ path: v.override.path, value: v.value, source: "env", origin: `env ${v.override.variable}` });
  const flags = opts.flags ?? {};
  if (flags.api !== undefined) overrides.push({ path: ["api"], value: flags.api, source: "flag", origin: "flag --api" });
  if (flags.mode !== undefined) overrides.push({ path: ["mode"], value: flags.mode, source: "flag", origin: "flag --mode" });
  if (flags.logLevel !== undefined) overrides.push({ path: ["log_level"], value: flags.logLevel, source: "flag", origin: "flag --log-level" });

  let merged: Record<string, unknown> = doc;
  const applied = new Map<string, { source: "env" | "flag"; origin: string }>();
  for (const o of overrides) {
    const next = setIn(merged, o.path, o.value);
    // A parent that is not a mapping stays as it is: its own type error is the real problem.
    if (next === undefined) continue;
    merged = next;
    applied.set(o.path.join("."), { source: o.source, origin: o.origin });
  }

  let config: Config;
  try {
    config = parseConfig(merged);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const annotated = err.issues.map((i): ConfigIssue => {
      const o = applied.get(i.path);
      return o === undefined ? i : { ...i, origin: o.origin };
    });
    throw new ConfigError([...env.issues, ...annotated]);
  }
  if (env.issues.length > 0) throw new ConfigError(env.issues);
  return Object.freeze({ config, file, sources: Object.freeze(collectSources(config, doc, applied)) });
}

function decodeYaml(text: string, file: string): Record<string, unknown> {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const where = pos === undefined ? file : `${file}:${pos.line}:${pos.col}`;
        // yaml's message repeats the position and a source excerpt; keep the first clause.
        const message = (e.message.split("\n")[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, "");
        return { path: where, message: `YAML syntax error: ${message}` };
      }),
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([{ path: file, message: `YAML error: ${err instanceof Error ? err.message : String(err)}` }]);
  }
  if (value === null || value === undefined) return {};
  if (!isRec(value) || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new ConfigError([{ path: file, message: "must be a YAML mapping of configuration keys", received: value }]);
  }
  return value;
}

/** Copy-on-write set; undefined when a parent on the path exists but is not a mapping. */
function setIn(obj: Record<string, unknown>, path: readonly string[], value: unknown): Record<string, unknown> | undefined {
  const [head, ...rest] = path;
  if (head === undefined) return undefined;
  const copy: Record<string, unknown> = { ...obj };
  if (rest.length === 0) {
    copy[head] = value;
    return copy;
  }
  const child = obj[head] ?? {};
  if (!isRec(child)) return undefined;
  const next = setIn(child, rest, value);
  if (next === undefined) return undefined;
  copy[head] = next;
  return copy;
}

// Values whose inner keys are data, not config keys.
const mapLeaves = new Set(["registration.metadata"]);

function collectSources(
  config: Config,
  fileDoc: Record<string, unknown>,
  applied: ReadonlyMap<string, { source: "env" | "flag" }>,
): Record<string, ConfigSource> {
  const out: Record<string, ConfigSource> = {};
  const walk = (v: unknown, path: string[]): void => {
    const key = path.join(".");
    const isLeaf = !isRec(v) || isDuration(v) || ("bytes" in v && "text" in v) || mapLeaves.has(key);
    if (!isLeaf) {
      for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
      return;
    }
    out[key] = applied.get(key)?.source ?? (at(fileDoc, path) !== undefined ? "file" : "default");
  };
  walk(config, []);
  return out;
}
