import { chmodSync, chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerCleanup } from "./cleanup.js";
import { RUN_PREFIX } from "./runId.js";

export interface TempDirOptions {
  /** Directory mode (default 0o700). A process running as `plexd` needs at least 0o711 on it. */
  mode?: number;
  owner?: { uid: number; gid: number };
}

/**
 * Creates `$TMPDIR/<runprefix>-<prefix>-XXXXXX` and registers its recursive removal.
 * Synchronous on purpose: usable in constructors and in `process.on("exit")` paths.
 */
export function makeTempDir(prefix: string, opts: TempDirOptions = {}): string {
  if (!/^[A-Za-z0-9_.-]{1,40}$/.test(prefix)) throw new Error(`invalid temp dir prefix ${prefix}`);
  const dir = mkdtempSync(join(tmpdir(), `${RUN_PREFIX}-${prefix}-`));
  const remove = (): void => rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  registerCleanup(`tempdir ${dir}`, async () => remove(), remove);
  chmodSync(dir, opts.mode ?? 0o700);
  if (opts.owner) chownSync(dir, opts.owner.uid, opts.owner.gid);
  return dir;
}
