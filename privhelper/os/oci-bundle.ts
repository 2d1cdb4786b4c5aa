// The OCI bundle of one `container` hook run, for crun: the host's own file system, read-only (every top-level directory bound with
// recursive read-only, its symlinks copied), the hook's writable paths bound read-write, a fresh /proc and a /dev with the standard nodes
// plus the hook's allowed devices; mount and PID namespaces, and a network namespace of its own unless `network` is host; the hook's user
// and groups, no capability but those it declares, no new privileges. The hook itself arrives as fd 3 (crun --preserve-fds 1) and is run as
// /proc/self/fd/3, the descriptor that was hashed.
import { chmod, mkdir, readdir, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { RunSandboxedRequest } from "../../proto/gen/plexd/priv/v1/priv_pb.js";

type FromRequest = Pick<RunSandboxedRequest, "writablePaths" | "allowedDevices" | "mountProc" | "capabilities">;
export interface ContainerSpec extends FromRequest { uid: number; gid: number; groups: number[]; env: Record<string, string>; network: "none" | "host" }

type Entry = { name: string; symlink?: string };

export const standardDevices = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

// Supplied by the bundle itself (/proc, /dev) or meaningless inside it.
const ownMounts = new Set(["proc", "dev", "lost+found"]);

async function device(path: string): Promise<string> {
  const s = await stat(path);
  if (!s.isCharacterDevice() && !s.isBlockDevice()) throw new Error(`${path} is not a device`);
  return path;
}

/** config.json for `spec`, given the entries of the host's root directory. */
export async function ociConfig(spec: ContainerSpec, root: readonly Entry[]): Promise<object> {
  const bind = (path: string, mode: "rro" | "rw") => ({ destination: path, type: "bind", source: path, options: ["rbind", mode, "nosuid"] });
  const caps = [...spec.capabilities];
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: spec.uid, gid: spec.gid, additionalGids: spec.groups },
      args: ["/proc/self/fd/3"],
      env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      cwd: "/",
      // A non-root user keeps a capability only when it is ambient too.
      capabilities: { bounding: caps, effective: caps, inheritable: caps, permitted: caps, ambient: caps },
      noNewPrivileges: true,
    },
    root: { path: "rootfs", readonly: true },
    mounts: [
      ...root.filter((e) => e.symlink === undefined && !ownMounts.has(e.name)).map((e) => bind(`/${e.name}`, "rro")),
      ...(spec.mountProc ? [{ destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "nodev", "noexec"] }] : []),
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "noexec", "mode=755", "size=64k"] },
      // Device nodes bound from the host's /dev: crun would mknod them, which needs CAP_MKNOD, and privhelper's unit does not grant it.
      ...[...standardDevices, ...(await Promise.all(spec.allowedDevices.map(device)))].map((d) => ({ destination: d, type: "bind", source: d, options: ["bind", "nosuid", "noexec"] })),
      ...spec.writablePaths.map((p) => bind(p, "rw")),
    ],
    linux: { namespaces: [{ type: "pid" }, { type: "mount" }, ...(spec.network === "none" ? [{ type: "network" }] : [])] },
  };
}

/** Writes the bundle into the empty, private directory `dir`. */
export async function writeBundle(dir: string, spec: ContainerSpec): Promise<void> {
  const root: Entry[] = [];
  for (const e of await readdir("/", { withFileTypes: true })) {
    if (e.isSymbolicLink()) root.push({ name: e.name, symlink: await readlink(`/${e.name}`) });
    else if (e.isDirectory()) root.push({ name: e.name });
  }
  // The container's / : it must be searchable by the hook's user.
  const rootfs = join(dir, "rootfs");
  await mkdir(rootfs);
  await chmod(rootfs, 0o755);
  // /bin -> usr/bin and the like: a bind mount cannot stand in for a symlink.
  for (const e of root) if (e.symlink !== undefined) await symlink(e.symlink, join(rootfs, e.name));
  await writeFile(join(dir, "config.json"), JSON.stringify(await ociConfig(spec, root)), { mode: 0o600 });
}
