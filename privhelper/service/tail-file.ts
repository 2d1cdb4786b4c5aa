// TailFile: one chunk of a root-only log file, for files listed in logs.tail_files of the
// root-owned config and nothing else. Stateless on purpose: the agent keeps the offset and
// notices rotation (inode) and truncation (size) itself, so privhelper holds no open files.
import { constants } from "node:fs";
import { open, realpath } from "node:fs/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { globSync } from "tinyglobby";
import type { TailFileRequest, TailFileResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { PrivConfig } from "../config.js";

export const maxTailChunk = 1024 * 1024;

const denied = (path: string, why: string) => new PlexdError("permission_denied", `TailFile ${JSON.stringify(path)}: ${why}`);

/** Refuses anything but an existing regular file, reached without symlinks, that a logs.tail_files glob lists. */
async function allowed(config: PrivConfig, path: string): Promise<void> {
  if (!path.startsWith("/") || path.split("/").includes("..") || path.includes("\0")) {
    throw new PlexdError("invalid_argument", `TailFile path must be absolute without "..": ${JSON.stringify(path)}`);
  }
  if (config.tailFiles.length === 0) throw denied(path, "logs.tail_files in privhelper's config lists no files");
  // The globs list only existing files: a missing file reads as not allowed, so the caller learns
  // nothing about paths outside the allow-list.
  const listed = globSync([...config.tailFiles], { absolute: true, onlyFiles: true, followSymbolicLinks: false, expandDirectories: false });
  if (!listed.includes(path)) throw denied(path, `not an existing file matching logs.tail_files (${config.tailFiles.join(", ")})`);
  const real = await realpath(path).catch(() => undefined);
  if (real !== path) throw denied(path, "the path goes through a symlink");
}

export function makeTailFile(deps: { config: PrivConfig }) {
  return async (req: TailFileRequest): Promise<MessageInitShape<typeof TailFileResponseSchema>> => {
    if (req.maxBytes < 1 || req.maxBytes > maxTailChunk) throw new PlexdError("invalid_argument", `max_bytes must be 1-${maxTailChunk}`);
    await allowed(deps.config, req.path);
    const fh = await open(req.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
      throw denied(req.path, `cannot open: ${err.code ?? err.message}`);
    });
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) throw denied(req.path, "not a regular file");
      const size = st.size;
      const inode = `${st.dev}:${st.ino}`;
      if (req.offset >= size) return { inode, size, data: new Uint8Array() };
      const want = Number(size - req.offset < BigInt(req.maxBytes) ? size - req.offset : BigInt(req.maxBytes));
      const buf = Buffer.alloc(want);
      const { bytesRead } = await fh.read(buf, 0, want, Number(req.offset));
      return { inode, size, data: buf.subarray(0, bytesRead) };
    } finally {
      await fh.close();
    }
  };
}
