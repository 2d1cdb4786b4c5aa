// `plexd config check FILE`: validate a file without starting anything (docs/config-reference.md;
// exit 2 when invalid). Environment overrides apply exactly as they would for `plexd up`.
import { CONFIG_EXIT_CODE, ConfigError } from "./config-error.js";
import { loadConfig } from "./load.js";

export interface CheckResult {
  readonly exitCode: 0 | 2;
  readonly output: string;
}

/** `json`: one object `{file, ok, issues: [{path, message, received?, origin?}]}` on stdout either way. */
export function checkConfigFile(file: string, env: NodeJS.ProcessEnv = process.env, json = false): CheckResult {
  try {
    const { config: c } = loadConfig({ file, env });
    return {
      exitCode: 0,
      output: json
        ? JSON.stringify({ file, ok: true, issues: [] })
        : `config OK: ${file} (api ${c.api}, mode ${c.mode}, mesh ${c.mesh.interface}:${c.mesh.listen_port}, data_dir ${c.data_dir})`,
    };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { exitCode: CONFIG_EXIT_CODE, output: json ? JSON.stringify({ file, ok: false, issues: err.issues }) : err.format() };
  }
}
