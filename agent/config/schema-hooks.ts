// `hooks` section with declared hook definitions (docs/config-reference.md).
import * as z from "zod";
import {
  type Duration,
  type Rules,
  type Size,
  bool,
  duration,
  isAbsolutePath,
  isInside,
  isRec,
  list,
  oneOf,
  optionalSize,
  section,
  str,
  withRules,
} from "./schema-common.js";

export const hookNameRe = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const hookParamNameRe = /^[a-z][a-z0-9_]{0,63}$/;
export const sandboxLevels = ["none", "namespaced", "container"] as const;
export type SandboxLevel = (typeof sandboxLevels)[number];

// A parameter default is text (it ends up in PLEXD_PARAM_<NAME>), but operators naturally
// write `default: 5` or `default: true` in YAML, so scalars are accepted and kept as text.
const paramDefault = z
  .union([z.string(), z.number(), z.boolean(), z.null()], { error: "must be a string, number or boolean" })
  .transform((v) => (v === null ? null : String(v)))
  .prefault(null);

const hookParameter = section({
  name: str().meta({ description: "Parameter name; passed to the hook as environment variable `PLEXD_PARAM_<NAME>`.", allowed: "`^[a-z][a-z0-9_]{0,63}$`, unique within the hook" }),
  type: oneOf(["string", "bool", "int"]).meta({ description: "Parameter type; a value that does not parse as it is refused." }),
  required: bool().prefault(false).meta({ description: "The action must give this parameter." }),
  default: paramDefault.meta({ description: "Value used when the action gives none (scalars are kept as text).", allowed: "matches `type`" }),
  description: str().prefault("").meta({ description: "Shown to operators in the capability list." }),
});

const cpuMessage = 'must be a decimal number of CPU cores greater than 0, e.g. "1.0"';
const cpu = z
  .union([z.string(), z.number(), z.null()], { error: cpuMessage })
  .transform((v, ctx): number | null => {
    if (v === null) return null;
    const n = typeof v === "number" ? v : /^\d+(?:\.\d+)?$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isFinite(n) || n <= 0) {
      ctx.issues.push({ code: "custom", input: v, message: cpuMessage });
      return z.NEVER;
    }
    return n;
  })
  .prefault(null)
  .meta({ description: "CPU limit in cores; null means unlimited.", allowed: 'a decimal number > 0, e.g. "1.5"' });

// Every option of every level is accepted by type; which ones apply to the chosen level is a
// rule, and the top-level schema fills the level's defaults once the whole file is valid.
const sandboxOptionsInput = section({
  writable_paths: list(str()).optional().meta({ description: "Paths the hook may write (`namespaced`, `container`).", allowed: "absolute paths", default_doc: "`[/tmp]`" }),
  mount_proc: bool().optional().meta({ description: "Mount a fresh /proc in the sandbox (`namespaced`).", default_doc: "`true`" }),
  allowed_devices: list(str()).optional().meta({ description: "Devices visible in the sandbox (`namespaced`).", allowed: "paths under /dev", default_doc: "`[]`" }),
  image: str().optional().meta({ description: "Container image (`container`).", default_doc: "`\"\"`" }),
  network: oneOf(["none", "host"]).optional().meta({ description: "Network of the container (`container`).", default_doc: "`none`" }),
  capabilities: list(str()).optional().meta({ description: "Linux capabilities kept in the container (`container`).", allowed: "capability names such as CAP_NET_ADMIN", default_doc: "`[]`" }),
});

const optionsByLevel: Record<SandboxLevel, readonly string[]> = {
  none: [],
  namespaced: ["writable_paths", "mount_proc", "allowed_devices"],
  container: ["image", "writable_paths", "network", "capabilities"],
};

export const hookDefinitionInput = section({
  name: str().meta({ description: "Hook name, as actions name it.", allowed: "`^[a-z0-9][a-z0-9_-]{0,62}$`, unique" }),
  path: str().meta({ description: "Executable of the hook.", allowed: "absolute path inside `hooks.dir`" }),
  description: str().prefault("").meta({ description: "Shown to operators in the capability list.", allowed: "at most 256 characters" }),
  parameters: list(hookParameter).prefault([]).meta({ description: "Parameters the hook accepts." }),
  // Absent means actions.default_timeout; filled in by the top-level schema.
  timeout: duration().optional().meta({ description: "Timeout of one run.", allowed: "> 0 and ≤ `actions.max_action_timeout`", default_doc: "`actions.default_timeout`" }),
  user: str().prefault("nobody").meta({ description: "User the hook runs as.", allowed: "a user name (a-z, 0-9, `_`, `-`, up to 32 characters)" }),
  sandbox: oneOf(sandboxLevels).prefault("namespaced").meta({ description: "Isolation level of a run." }),
  resources: section({
    cpu,
    memory: optionalSize().meta({ description: "Memory limit; null means unlimited.", allowed: "bytes, or a number with suffix K, M or G (e.g. 512M); > 0" }),
  }).prefault({}).meta({ description: "Resource limits of one run (cgroup v2)." }),
  sandbox_options: sandboxOptionsInput.prefault({}).meta({ description: "Options of the chosen sandbox level; an option of another level is refused. Defaults are filled for the chosen level." }),
});

export interface SandboxOptions {
  readonly writable_paths: readonly string[];
  readonly mount_proc: boolean;
  readonly allowed_devices: readonly string[];
  readonly image: string;
  readonly network: "none" | "host";
  readonly capabilities: readonly string[];
}

type HookDefinitionInput = z.output<typeof hookDefinitionInput>;

/** A hook definition with every default applied (timeout and sandbox options included). */
export interface HookDefinition extends Omit<HookDefinitionInput, "timeout" | "sandbox_options" | "resources"> {
  readonly timeout: Duration;
  readonly resources: { readonly cpu: number | null; readonly memory: Size | null };
  readonly sandbox_options: SandboxOptions;
}

export function completeHookDefinition(d: HookDefinitionInput, defaultTimeout: Duration): HookDefinition {
  const o = d.sandbox_options;
  return {
    ...d,
    timeout: d.timeout ?? defaultTimeout,
    sandbox_options: {
      writable_paths: o.writable_paths ?? ["/tmp"],
      mount_proc: o.mount_proc ?? true,
      allowed_devices: o.allowed_devices ?? [],
      image: o.image ?? "",
      network: o.network ?? "none",
      capabilities: o.capabilities ?? [],
    },
  };
}

/** Does `text` parse as a value of parameter type `type`? Shared with the action runner. */
export function paramValueMatches(type: string, text: string): boolean {
  if (type === "int") return /^-?\d+$/.test(text) && Number.isSafeInteger(Number(text));
  if (type === "bool") return ["true", "false", "1", "0"].includes(text);
  return true;
}

function checkDefinition(r: Rules, i: number, dir: string | undefined): void {
  const p = (...rest: (string | number)[]) => ["definitions", i, ...rest];
  r.match(p("name"), hookNameRe, "must be 1–63 characters of a-z, 0-9, _ and -, starting with a letter or digit");
  const path = r.str(p("path"));
  if (path !== undefined) {
    if (!isAbsolutePath(path)) r.report(p("path"), "must be an absolute path", path);
    else if (dir !== undefined && isAbsolutePath(dir) && !isInside(path, dir)) r.report(p("path"), `must lie inside hooks.dir (${dir})`, path);
  }
  const desc = r.str(p("description"));
  if (desc !== undefined && desc.length > 256) r.report(p("description"), "must be at most 256 characters", desc);
  r.durPositive(p("timeout"));
  r.match(p("user"), /^[a-z_][a-z0-9_-]{0,31}\$?$/, "must be a user name (a-z, 0-9, _ and -, up to 32 characters)");

  const params = r.get(p("parameters"));
  if (Array.isArray(params)) {
    const seen = new Map<string, number>();
    params.forEach((q, j) => {
      if (!isRec(q)) return;
      r.match(p("parameters", j, "name"), hookParamNameRe, "must be 1–64 characters of a-z, 0-9 and _, starting with a letter");
      if (typeof q.name === "string") {
        const first = seen.get(q.name);
        if (first !== undefined) r.report(p("parameters", j, "name"), `duplicate parameter name (also parameters[${first}])`, q.name);
        else seen.set(q.name, j);
      }
      if (typeof q.type === "string" && typeof q.default === "string" && !paramValueMatches(q.type, q.default)) {
        const want = q.type === "int" ? "an integer" : "true, false, 1 or 0";
        r.report(p("parameters", j, "default"), `must be ${want} to match type ${q.type}`, q.default);
      }
    });
  }

  const mem = r.get(p("resources", "memory"));
  if (isRec(mem) && mem.bytes === 0) r.report(p("resources", "memory"), "must be greater than 0", mem.text);

  const level = r.str(p("sandbox"));
  const opts = r.get(p("sandbox_options"));
  if (isRec(opts) && level !== undefined && level in optionsByLevel) {
    const allowed = optionsByLevel[level as SandboxLevel];
    for (const k of Object.keys(opts)) {
      if (opts[k] !== undefined && !allowed.includes(k)) r.report(p("sandbox_options", k), `does not apply to sandbox ${level}`, opts[k]);
    }
    for (const key of ["writable_paths", "allowed_devices"] as const) {
      const xs = opts[key];
      if (!Array.isArray(xs)) continue;
      xs.forEach((x, k) => {
        if (typeof x !== "string") return;
        if (key === "allowed_devices" ? !isInside(x, "/dev") : !isAbsolutePath(x)) {
          r.report(p("sandbox_options", key, k), key === "allowed_devices" ? "must be a device path under /dev" : "must be an absolute path", x);
        }
      });
    }
    if (Array.isArray(opts.capabilities)) {
      opts.capabilities.forEach((c, k) => {
        if (typeof c === "string" && !/^(?:CAP_)?[A-Z_]{2,32}$/.test(c)) {
          r.report(p("sandbox_options", "capabilities", k), "must be a Linux capability name such as CAP_NET_ADMIN", c);
        }
      });
    }
  }
}

export const hooksSchema = withRules(
  section({
    enabled: bool().prefault(true).meta({ description: "Offer the declared hooks as actions." }),
    dir: str().prefault("/etc/plexd/hooks.d").meta({ description: "Directory of hook executables; must be owned by root and not group/other-writable.", allowed: "absolute path (when enabled)" }),
    definitions: list(hookDefinitionInput).prefault([]).meta({ description: "Declared hooks.", allowed: "names unique" }),
    trusted_keys: list(str()).prefault([]).meta({ description: "Ed25519 public keys (raw 32 bytes, base64) whose detached `<hook>.sig` signatures mark a hook signed; several at once for rotation." }),
    require_signature: bool().prefault(false).meta({ description: "Refuse hooks that no trusted key signed (announced with an empty checksum, rejected with integrity_violation)." }),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    r.absPath(["dir"]);
    const keys = r.get(["trusted_keys"]);
    if (Array.isArray(keys)) {
      keys.forEach((k, i) => {
        if (typeof k === "string" && (!/^[A-Za-z0-9+/]{43}=$/.test(k) || Buffer.from(k, "base64").length !== 32)) r.report(["trusted_keys", i], "must be a base64 Ed25519 public key (32 bytes)", k);
      });
      if (r.on(["require_signature"]) && keys.length === 0) r.report(["require_signature"], "needs at least one key in hooks.trusted_keys", true);
    }
    const defs = r.get(["definitions"]);
    if (!Array.isArray(defs)) return;
    const dir = r.str(["dir"]);
    const seen = new Map<string, number>();
    defs.forEach((d, i) => {
      if (!isRec(d)) return;
      checkDefinition(r, i, dir);
      if (typeof d.name === "string") {
        const first = seen.get(d.name);
        if (first !== undefined) r.report(["definitions", i, "name"], `duplicate hook name (also hooks.definitions[${first}])`, d.name);
        else seen.set(d.name, i);
      }
    });
  },
).prefault({}).meta({ description: "Operator-declared hooks, offered as actions. This version of the agent validates the section but does not act on it yet." });
