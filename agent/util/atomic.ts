import { open, rename, mkdir, unlink } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";

/**
 * Write a file so that readers see either the old or the new content, never a torn one:
 * temp file in the same directory (same filesystem, so rename is atomic), fsync, rename,
 * then fsync the directory so the rename itself survives a crash. Files default to 0600.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await open(tmp, "wx", mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode); // umask may have narrowed or widened the create mode
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, "r");
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

export async function writeJsonAtomic(path: string, value: unknown, mode = 0o600): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n", mode);
}

/** Appends `data` to `path` (created 0600 when missing) and datasyncs it. */
export async function appendDurable(path: string, data: string): Promise<void> {
  const fh = await open(path, "a", 0o600);
  try {
    await fh.writeFile(data);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/**
 * How the agent's persistence writes files. The plain one writes; the agent's own is a
 * DataDirFence, which stops writing once data_dir's identity was removed by someone else.
 */
export interface DataWriter {
  writeFileAtomic(path: string, data: string | Uint8Array, mode?: number): Promise<void>;
  writeJsonAtomic(path: string, value: unknown, mode?: number): Promise<void>;
  appendDurable(path: string, data: string): Promise<void>;
}

export const plainWriter: DataWriter = { writeFileAtomic, writeJsonAtomic, appendDurable };
