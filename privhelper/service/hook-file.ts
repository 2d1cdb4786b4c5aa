// Hook files: the checks that decide whether a file may run, and HashFiles. A hook is run only from the descriptor these checks were made
// on (run-sandboxed.ts), so the bytes hashed are the bytes executed, whatever happens to the path meanwhile.
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open, realpath, stat, type FileHandle } from "node:fs/promises";
import { relative } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HashFilesRequest, HashFilesResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { PrivConfig } from "../config.js";

const refuse = (problem: string) => new PlexdError("failed_precondition", problem);

const rootOwned = (s: { uid: number; mode: number }, what: string): void => {
  if (s.uid !== 0) throw refuse(`${what} is not owned by root`);
  if ((s.mode & 0o022) !== 0) throw refuse(`${what} is writable by group or others`);
};

/** Opens `path` for running when it passes every check; the caller closes the handle. */
export async function openHook(config: PrivConfig, path: string): Promise<{ fh: FileHandle; realPath: string; checksum: string }> {
  if (!path.startsWith("/")) throw new PlexdError("invalid_argument", `hook path must be absolute: ${JSON.stringify(path)}`);
  const dir = await realpath(config.hooksDir).catch(() => Promise.reject(refuse(`hooks.dir ${config.hooksDir} does not exist`)));
  rootOwned(await stat(dir), `hooks.dir ${dir}`);
  const real = await realpath(path).catch(() => Promise.reject(refuse("file does not exist")));
  const rel = relative(dir, real);
  if (rel === "" || rel.startsWith("..") || rel.startsWith("/")) throw refuse(`resolves to ${real}, outside hooks.dir ${dir}`);
  const fh = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const s = await fh.stat();
    if (!s.isFile()) throw refuse("not a regular file");
    rootOwned(s, "file");
    if ((s.mode & 0o100) === 0) throw refuse("not executable by its owner");
    const hash = createHash("sha256");
    // Positional reads (start: 0) and the handle left open: the hook runs from it next.
    for await (const chunk of fh.createReadStream({ start: 0, autoClose: false })) hash.update(chunk as Buffer);
    return { fh, realPath: real, checksum: `sha256:${hash.digest("hex")}` };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

export function makeHashFiles(deps: { config: PrivConfig }) {
  return async (req: HashFilesRequest): Promise<MessageInitShape<typeof HashFilesResponseSchema>> => {
    if (req.paths.length > 256) throw new PlexdError("invalid_argument", "at most 256 paths per call");
    const files = [];
    for (const path of req.paths) {
      try {
        const h = await openHook(deps.config, path);
        await h.fh.close();
        files.push({ path, realPath: h.realPath, checksum: h.checksum, problem: "" });
      } catch (err) {
        const e = PlexdError.from(err);
        if (e.code === "invalid_argument") throw e;
        files.push({ path, realPath: "", checksum: "", problem: e.message });
      }
    }
    return { files };
  };
}
