import { readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../util/log.js";
import { isValidKey } from "./keys.js";

// Reading the node state files under data_dir/state back at start-up: a missing file is an
// empty category, a malformed entry is skipped with a warning (never a crash loop).

export interface StateEntry {
  key: string;
  content_type: string;
  payload: unknown;
  version: number;
  /** RFC 3339. */
  updated_at: string;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function isEntry(v: unknown): v is StateEntry {
  return (
    isRecord(v) &&
    typeof v.key === "string" &&
    typeof v.content_type === "string" &&
    "payload" in v &&
    typeof v.version === "number" &&
    typeof v.updated_at === "string"
  );
}

export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as unknown;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export async function readEntryDir(dir: string, log: Logger): Promise<Map<string, StateEntry>> {
  const out = new Map<string, StateEntry>();
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  for (const name of names) {
    if (!name.endsWith(".json") || name.startsWith(".")) continue;
    const key = name.slice(0, -".json".length);
    try {
      const v = await readJson(join(dir, name));
      if (isEntry(v) && v.key === key && isValidKey(key)) out.set(key, v);
      else log.warn({ file: join(dir, name) }, "ignoring malformed state entry");
    } catch (err) {
      log.warn({ file: join(dir, name), err: String(err) }, "ignoring unreadable state entry");
    }
  }
  return out;
}

export async function unlinkIfPresent(path: string): Promise<void> {
  await unlink(path).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  });
}
