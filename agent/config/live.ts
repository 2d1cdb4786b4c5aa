import { PlexdError } from "../../proto/lib/errors.js";
import type { Logger } from "../util/log.js";
import { ConfigError, type LoadedConfig } from "./load.js";
import { planReload, type ReloadPlan } from "./reload.js";
import type { Config } from "./schema.js";

// The running configuration of the agent and the one way to change it: a reload re-reads the
// file with the flags and environment of the start (so a flag still wins over the file), applies
// the live keys and reports the rest as restart_required. An invalid file changes nothing.

export type ConfigListener = (next: Config, previous: Config) => void;

export class LiveConfig {
  #current: Config;
  readonly #listeners = new Set<ConfigListener>();

  constructor(initial: Config) {
    this.#current = initial;
  }

  get current(): Config {
    return this.#current;
  }

  replace(next: Config): void {
    const previous = this.#current;
    if (next === previous) return;
    this.#current = next;
    for (const l of this.#listeners) l(next, previous);
  }

  subscribe(listener: ConfigListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

export interface ReloaderDeps {
  live: LiveConfig;
  /** Loads the file again exactly as at start-up (same --config, flags and environment). */
  load: () => LoadedConfig;
  /** The root logger: its level is the level of every child. */
  log: Logger;
  /** Where each key of the running configuration came from, at start (config.dump). */
  sources?: LoadedConfig["sources"];
}

export class ConfigReloader {
  readonly #d: ReloaderDeps;
  #sources: LoadedConfig["sources"];

  constructor(deps: ReloaderDeps) {
    this.#d = deps;
    this.#sources = deps.sources ?? {};
  }

  /** Source (default, file, env, flag) of each key as of the last successful load. */
  get sources(): LoadedConfig["sources"] {
    return this.#sources;
  }

  /** Throws PlexdError(invalid_argument) naming every bad key path when the file is invalid. */
  reload(trigger: string): ReloadPlan {
    const { live, log } = this.#d;
    let loaded: LoadedConfig;
    try {
      loaded = this.#d.load();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      const message = `configuration not reloaded, the running one stays: ${err.format()}`;
      log.error({ trigger, issues: err.issues.map((i) => i.path) }, message);
      throw new PlexdError("invalid_argument", message, { cause: err });
    }
    const plan = planReload(live.current, loaded.config);
    this.#sources = loaded.sources;
    if (plan.applied.includes("log_level")) log.level = plan.config.log_level;
    live.replace(plan.config);
    log.info({ trigger, file: loaded.file, applied: plan.applied, restart_required: plan.restartRequired }, "configuration reloaded");
    return plan;
  }
}
