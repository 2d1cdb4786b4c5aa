// Two ways to read a log file: directly (the agent is in group adm), or through privhelper
// TailFile for root-only files listed in its logs.tail_files. The tailer sees one interface.
import { open, stat, type FileHandle } from "node:fs/promises";
import { PlexdError } from "../../../proto/lib/errors.js";
import type { PrivClient } from "../../privclient/client.js";

/** One opened file: reads keep going to it after the path was renamed or removed (direct access). */
export interface OpenFile {
  readonly inode: string;
  /** Bytes from `offset` (at most `max`) and the file's size now. */
  read(offset: number, max: number): Promise<{ data: Buffer; size: number }>;
  close(): Promise<void>;
}

export interface FileAccess {
  readonly via: "direct" | "privhelper";
  /** The file the path names now; undefined when there is none (removed, or not readable this way). */
  stat(path: string): Promise<{ inode: string; size: number } | undefined>;
  open(path: string): Promise<OpenFile>;
  /** Why the last stat of `path` found nothing, when the answer was a refusal (privhelper). */
  refusal?(path: string): string | undefined;
}

const inodeOf = (s: { dev: bigint; ino: bigint }): string => `${s.dev}:${s.ino}`;

export const directAccess: FileAccess = {
  via: "direct",
  async stat(path) {
    const s = await stat(path, { bigint: true }).catch(() => undefined);
    return s?.isFile() ? { inode: inodeOf(s), size: Number(s.size) } : undefined;
  },
  async open(path) {
    const fh: FileHandle = await open(path, "r");
    const s = await fh.stat({ bigint: true });
    return {
      inode: inodeOf(s),
      async read(offset, max) {
        const size = Number((await fh.stat({ bigint: true })).size);
        if (offset >= size) return { data: Buffer.alloc(0), size };
        const buf = Buffer.allocUnsafe(Math.min(max, size - offset));
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        return { data: buf.subarray(0, bytesRead), size };
      },
      close: () => fh.close(),
    };
  },
};

// Past any real file: TailFile answers with inode and size and no data.
const beyondEnd = 2n ** 62n;

/** privhelper reads by path: once the path names another file, the old one cannot be read any more. */
export function privhelperAccess(priv: PrivClient): FileAccess {
  const look = (path: string) => priv.tailFile({ path, offset: beyondEnd, maxBytes: 1 });
  const refusals = new Map<string, string>();
  return {
    via: "privhelper",
    refusal: (path) => refusals.get(path),
    async stat(path) {
      const r = await look(path).catch((err: unknown) => {
        refusals.set(path, PlexdError.from(err).message);
        return undefined;
      });
      if (r !== undefined) refusals.delete(path);
      return r === undefined ? undefined : { inode: r.inode, size: Number(r.size) };
    },
    async open(path) {
      const first = await look(path);
      return {
        inode: first.inode,
        async read(offset, max) {
          const r = await priv.tailFile({ path, offset: BigInt(offset), maxBytes: Math.min(max, 1024 * 1024) });
          // Another file under the path: this one ended where we were (the tailer then sees the new inode).
          if (r.inode !== first.inode) return { data: Buffer.alloc(0), size: offset };
          return { data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength), size: Number(r.size) };
        },
        close: async () => undefined,
      };
    },
  };
}

/** EACCES/EPERM: the file exists but is not the agent's to read. */
export const isDenied = (err: unknown): boolean => ["EACCES", "EPERM"].includes((err as NodeJS.ErrnoException).code ?? "") || PlexdError.from(err).code === "permission_denied";
