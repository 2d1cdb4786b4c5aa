import { mkdtemp, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ociConfig, writeBundle, type ContainerSpec } from "./oci-bundle.js";

const spec: ContainerSpec = { uid: 65534, gid: 65534, groups: [65534, 4], env: { PATH: "/usr/bin:/bin", PLEXD_PARAM_X: "a b\n$(c)" }, writablePaths: ["/var/lib/app"], allowedDevices: [], mountProc: true, network: "none", capabilities: [] };
const root = [{ name: "usr" }, { name: "etc" }, { name: "proc" }, { name: "dev" }, { name: "bin", symlink: "usr/bin" }];

type Config = { process: Record<string, unknown> & { capabilities: Record<string, string[]> }; root: unknown; mounts: { destination: string; type: string; options?: string[] }[]; linux: { namespaces: { type: string }[] } };

describe("OCI bundle of a container hook", () => {
  it("runs fd 3 as the hook's user, with no capability and no new privileges, env as given (never through a shell)", async () => {
    const c = (await ociConfig(spec, root)) as Config;
    expect(c.process).toMatchObject({ terminal: false, user: { uid: 65534, gid: 65534, additionalGids: [65534, 4] }, args: ["/proc/self/fd/3"], cwd: "/", noNewPrivileges: true });
    expect(c.process.env).toEqual(["PATH=/usr/bin:/bin", "PLEXD_PARAM_X=a b\n$(c)"]);
    for (const set of ["bounding", "effective", "inheritable", "permitted", "ambient"]) expect(c.process.capabilities[set], set).toEqual([]);
  });

  it("sees the host's directories read-only (recursively), its writable paths read-write, a fresh /proc and /dev; own mount, PID and network namespaces", async () => {
    const c = (await ociConfig(spec, root)) as Config;
    expect(c.root).toEqual({ path: "rootfs", readonly: true });
    expect(c.mounts.map((m) => [m.destination, m.type, ...(m.options ?? [])].join(" "))).toEqual([
      "/usr bind rbind rro nosuid",
      "/etc bind rbind rro nosuid",
      "/proc proc nosuid nodev noexec",
      "/dev tmpfs nosuid noexec mode=755 size=64k",
      ...["null", "zero", "full", "random", "urandom", "tty"].map((d) => `/dev/${d} bind bind nosuid noexec`),
      "/var/lib/app bind rbind rw nosuid",
    ]);
    expect(c.linux.namespaces).toEqual([{ type: "pid" }, { type: "mount" }, { type: "network" }]);
  });

  it("network host shares the host's network; declared capabilities are kept in every set", async () => {
    const c = (await ociConfig({ ...spec, network: "host", capabilities: ["CAP_NET_RAW"] }, root)) as Config;
    expect(c.linux.namespaces).toEqual([{ type: "pid" }, { type: "mount" }]);
    for (const set of ["bounding", "effective", "inheritable", "permitted", "ambient"]) expect(c.process.capabilities[set], set).toEqual(["CAP_NET_RAW"]);
  });

  it("an allowed device is bound from the host (no mknod: that would need CAP_MKNOD); a non-device is refused", async () => {
    const c = (await ociConfig({ ...spec, allowedDevices: ["/dev/ptmx"] }, root)) as Config;
    expect(c.mounts.filter((m) => m.destination === "/dev/ptmx")).toEqual([{ destination: "/dev/ptmx", type: "bind", source: "/dev/ptmx", options: ["bind", "nosuid", "noexec"] }]);
    await expect(ociConfig({ ...spec, allowedDevices: ["/dev/shm"] }, root)).rejects.toThrow("/dev/shm is not a device");
  });
});

describe("writeBundle", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-bundle-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("mirrors the host's top-level symlinks in a searchable rootfs and writes a private config.json", async () => {
    await writeBundle(dir, spec);
    expect((await stat(join(dir, "rootfs"))).mode & 0o777).toBe(0o755);
    expect((await stat(join(dir, "config.json"))).mode & 0o777).toBe(0o600);
    const c = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Config;
    expect(c.mounts.map((m) => m.destination)).toContain("/etc");
    expect(c.mounts.map((m) => m.destination)).not.toContain("/dev/pts");
    // Debian 12 is merged-/usr: /bin is a symlink to usr/bin on the host, and so in the bundle.
    const bin = await readlink("/bin").catch(() => undefined);
    if (bin !== undefined) expect(await readlink(join(dir, "rootfs", "bin"))).toBe(bin);
    else expect(c.mounts.map((m) => m.destination)).toContain("/bin");
  });
});
