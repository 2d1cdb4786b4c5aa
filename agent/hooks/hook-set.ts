import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { trustedSigner } from "../../proto/lib/hook-signature.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { HookRun, HookRuntime } from "../actions/manager.js";
import { announcedParam, type ActionDef, type ParamDef } from "../actions/catalog.js";
import type { Config } from "../config/schema.js";
import type { PrivClient } from "../privclient/client.js";
import type { Logger } from "../util/log.js";

// The declared hooks of this node (docs/actions.md "Hooks"): only hooks.definitions count,
// never other files in hooks.dir. Each is checked and hashed by privhelper (HashFiles) at start,
// on every change under hooks.dir (inotify), on a configuration change and on `plexd hooks
// reload`; a hook whose file fails a check is announced with an empty checksum and cannot run.
// Before a run the file is hashed again and must match what was announced (and the request's
// checksum, when it names one); privhelper then runs exactly the bytes it hashed.

type HookDefinition = Config["hooks"]["definitions"][number];

export interface HookState {
  readonly def: HookDefinition;
  /** "sha256:<hex>" as announced; "" when the file failed a check. */
  readonly checksum: string;
  readonly problem: string;
  /** A `<file>.sig` by one of hooks.trusted_keys covers the checksum. */
  readonly signed: boolean;
}

export interface Violation {
  type: "hook";
  path: string;
  expected_checksum: string;
  actual_checksum: string;
  detail: string;
  timestamp: string;
}

export interface HookSetDeps {
  config: () => Config;
  priv: PrivClient;
  log: Logger;
  nodeId: () => string;
  /** POST /integrity/violations (best effort). */
  reportViolation: (v: Violation) => Promise<void>;
  /** The announced hook set changed (capability update). */
  onChange: () => void;
}

const toParam = (p: HookDefinition["parameters"][number]): ParamDef => ({ name: p.name, type: p.type, required: p.required, description: p.description, ...(p.default === null ? {} : { default: p.default }) });

/** PLEXD_PARAM_<NAME>: upper-cased, anything outside [A-Z0-9_] replaced by _. */
export const paramEnvName = (name: string): string => `PLEXD_PARAM_${name.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`;

/** Whether `<path>.sig` signs `checksum` with a trusted key; otherwise why not. */
async function signatureOf(path: string, checksum: string, keys: readonly string[]): Promise<"signed" | string> {
  let sig: string;
  try {
    sig = await readFile(`${path}.sig`, "utf8");
  } catch {
    return `unsigned (no ${path}.sig)`;
  }
  return trustedSigner(checksum, sig, keys) >= 0 ? "signed" : "signature not by a trusted key, or over other content";
}

export class HookSet implements HookRuntime {
  readonly #d: HookSetDeps;
  #states = new Map<string, HookState>();
  #announced = "";
  #scans: Promise<void> = Promise.resolve();

  constructor(d: HookSetDeps) {
    this.#d = d;
  }

  list(): HookState[] {
    return [...this.#states.values()];
  }

  /** Checks and hashes every declared hook; announces when the set changed. Scans never overlap. */
  scan(why: string): Promise<void> {
    const run = this.#scans.then(() => this.#scan(why));
    this.#scans = run.catch(() => undefined);
    return run;
  }

  async #scan(why: string): Promise<void> {
    const cfg = this.#d.config().hooks;
    const defs = cfg.enabled ? cfg.definitions : [];
    let files: { checksum: string; problem: string }[];
    try {
      files = defs.length === 0 ? [] : (await this.#d.priv.hashFiles({ paths: defs.map((d) => d.path) }, { timeoutMs: 30_000 })).files;
    } catch (err) {
      const problem = `not checked: privhelper ${PlexdError.from(err).message}`;
      files = defs.map(() => ({ checksum: "", problem }));
    }
    const next = new Map<string, HookState>();
    for (const [i, def] of defs.entries()) {
      let f = files[i] ?? { checksum: "", problem: "not checked" };
      const signature = f.problem === "" && cfg.trusted_keys.length > 0 ? await signatureOf(def.path, f.checksum, cfg.trusted_keys) : "unsigned";
      if (signature !== "signed" && cfg.require_signature && f.problem === "") f = { checksum: "", problem: `${signature}; hooks.require_signature is on` };
      next.set(def.name, { def, checksum: f.problem === "" ? f.checksum : "", problem: f.problem, signed: signature === "signed" });
      if (def.user === "root") this.#d.log.warn({ hook: def.name }, "hook runs as root");
      if (f.problem !== "") this.#d.log.warn({ hook: def.name, path: def.path, problem: f.problem }, "hook cannot run");
    }
    this.#states = next;
    const text = JSON.stringify(this.announced());
    this.#d.log.info({ why, hooks: next.size, unavailable: [...next.values()].filter((s) => s.checksum === "").length }, "hooks scanned");
    if (text !== this.#announced) {
      const first = this.#announced === "";
      this.#announced = text;
      if (!first) this.#d.onChange();
    }
  }

  /** A fresh check of every declared hook file, without changing what is announced. */
  async check(signal: AbortSignal): Promise<Map<string, { checksum: string; problem: string }>> {
    const states = this.list();
    const files = states.length === 0 ? [] : (await this.#d.priv.hashFiles({ paths: states.map((s) => s.def.path) }, { timeoutMs: 30_000, signal })).files;
    return new Map(states.map((s, i) => [s.def.name, { checksum: files[i]?.checksum ?? "", problem: files[i]?.problem ?? "not checked" }]));
  }

  /** Rescans on every change under hooks.dir and every configuration change that touches hooks. */
  watch(signal: AbortSignal, subscribe: (fn: (next: Config, prev: Config) => void) => () => void): void {
    let watcher: FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    const soon = (why: string): void => {
      clearTimeout(timer);
      timer = setTimeout(() => void this.scan(why), 200);
    };
    const follow = (dir: string): void => {
      watcher?.close();
      try {
        watcher = watch(dir, () => soon("inotify"));
        watcher.on("error", () => undefined);
      } catch (err) {
        this.#d.log.warn({ dir, err: PlexdError.from(err).message }, "hooks.dir not watched; changes are seen at the next reload");
      }
    };
    follow(this.#d.config().hooks.dir);
    const unsubscribe = subscribe((next, prev) => {
      if (JSON.stringify(next.hooks) === JSON.stringify(prev.hooks)) return;
      if (next.hooks.dir !== prev.hooks.dir) follow(next.hooks.dir);
      soon("config");
    });
    signal.addEventListener("abort", () => (unsubscribe(), watcher?.close(), clearTimeout(timer)), { once: true });
  }

  get(name: string): (ActionDef & { timeoutMs: number }) | undefined {
    const s = this.#states.get(name);
    if (s === undefined) return undefined;
    return { name: `hooks/${name}`, type: "hook", description: s.def.description, parameters: s.def.parameters.map(toParam), timeoutMs: s.def.timeout.ms };
  }

  announced(): unknown[] {
    return this.list().map((s) => ({
      name: s.def.name,
      description: s.def.description,
      source: "script",
      checksum: s.checksum,
      parameters: s.def.parameters.map((p) => announcedParam(toParam(p))),
      timeout: `${s.def.timeout.ms / 1000}s`,
      sandbox: s.def.sandbox,
      signed: s.signed,
    }));
  }

  async verify(name: string, requestChecksum: string | undefined, signal: AbortSignal): Promise<{ ok: true } | { ok: false; detail: string }> {
    const s = this.#states.get(name);
    if (s === undefined) return { ok: false, detail: "not declared" };
    if (s.checksum === "") return this.#violation(s, "", `hook unavailable: ${s.problem}`);
    let f: { checksum: string; problem: string } | undefined;
    try {
      [f] = (await this.#d.priv.hashFiles({ paths: [s.def.path] }, { timeoutMs: 10_000, signal })).files;
    } catch (err) {
      // Not evidence of tampering, but nothing unverified runs: refused, not reported.
      const detail = `the file could not be checked: privhelper ${PlexdError.from(err).message}`;
      this.#d.log.warn({ hook: s.def.name, detail }, "hook not verified");
      return { ok: false, detail };
    }
    const actual = f?.checksum ?? "";
    if (f === undefined || f.problem !== "") return this.#violation(s, actual, f?.problem ?? "not checked");
    if (actual !== s.checksum) return this.#violation(s, actual, "checksum changed since the last scan");
    if (requestChecksum !== undefined && requestChecksum !== actual) return this.#violation(s, actual, `checksum differs from the requested ${requestChecksum}`);
    return { ok: true };
  }

  async #violation(s: HookState, actual: string, detail: string): Promise<{ ok: false; detail: string }> {
    this.#d.log.error({ hook: s.def.name, path: s.def.path, expected_checksum: s.checksum, actual_checksum: actual, detail }, "hook integrity violation");
    await this.#d.reportViolation({ type: "hook", path: s.def.path, expected_checksum: s.checksum, actual_checksum: actual, detail, timestamp: new Date().toISOString() }).catch(() => undefined);
    return { ok: false, detail };
  }

  async run(name: string, r: HookRun, signal: AbortSignal): Promise<{ exitCode: number; stdout: string; stderr: string; timedOut: boolean }> {
    const s = this.#states.get(name);
    if (s === undefined || s.checksum === "") throw new PlexdError("failed_precondition", `hook ${name} is no longer available`);
    const o = s.def.sandbox_options;
    const env: Record<string, string> = { PLEXD_NODE_ID: this.#d.nodeId(), PLEXD_EXECUTION_ID: r.executionId, PLEXD_ACTION_NAME: name };
    for (const [k, v] of Object.entries(r.params)) env[paramEnvName(k)] = v;
    try {
      const res = await this.#d.priv.runSandboxed(
        {
          path: s.def.path,
          checksum: s.checksum,
          user: s.def.user,
          sandbox: s.def.sandbox,
          writablePaths: [...o.writable_paths],
          mountProc: o.mount_proc,
          allowedDevices: [...o.allowed_devices],
          env,
          timeoutMs: r.timeoutMs,
          maxOutputBytes: r.maxOutputBytes,
          cpu: s.def.resources.cpu ?? 0,
          memoryBytes: BigInt(s.def.resources.memory?.bytes ?? 0),
          ...(s.def.sandbox === "container" ? { network: o.network, capabilities: [...o.capabilities], image: o.image } : {}),
        },
        // privhelper ends the run at its timeout (plus the 5 s kill grace); the call outlives both.
        { timeoutMs: r.timeoutMs + 30_000, signal },
      );
      return { exitCode: res.exitCode, stdout: res.stdout, stderr: res.stderr, timedOut: res.timedOut };
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.message.includes("integrity_violation")) await this.#violation(s, "", `before execution: ${e.message}`);
      throw e;
    }
  }
}
