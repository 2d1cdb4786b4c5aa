import { describe, expect, it } from "vitest";
import { WireGuardImpl, type GetInfoRequest } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { privConfigFrom } from "../config.js";
import type { Host } from "../os/host.js";
import { TranscriptRunner, fail, ok } from "../os/runner.js";
import { makeGetInfo } from "./get-info.js";

function host(files: string[], bins: string[]): Host {
  return {
    exists: (p) => Promise.resolve(files.includes(p)),
    which: (n) => Promise.resolve(bins.includes(n) ? `/usr/bin/${n}` : undefined),
    processes: () => Promise.resolve([]),
    netns: () => Promise.resolve("net:[1]"),
    kill: () => false,
    sleep: () => Promise.resolve(),
  };
}
const ctx = { signal: new AbortController().signal, caller: "test" };
const req = {} as GetInfoRequest;

describe("GetInfo", () => {
  it("reports wireguard-go when the kernel module is absent and cannot be loaded", async () => {
    const runner = new TranscriptRunner([
      { cmd: ["ip", "link", "add", "PROBE", "type", "wireguard"], result: fail("Error: Unknown device type.", 2) },
      { cmd: ["nft", "list", "tables"], result: ok("table inet filter\n") },
      { cmd: ["ip", "netns", "list"], result: ok("") },
    ]);
    // The probe interface name is random: let the transcript accept whatever plexdprb* name is used.
    const wrapped = {
      run: (f: string, a: readonly string[], o?: object) => runner.run(f, a.map((x) => (/^plexdprb[0-9a-f]{6}$/.test(x) ? "PROBE" : x)), o),
      spawnDetached: () => 0,
      batch: runner.batch.bind(runner),
      readKernelTable: runner.readKernelTable.bind(runner),
    };
    const getInfo = makeGetInfo({
      runner: wrapped,
      host: host(["/proc/self/loginuid", "/proc/self/ns/net", "/dev/net/tun"], ["wireguard-go", "wg", "nft", "ip"]),
      config: privConfigFrom({ mesh: { interface: "plexd7" } }),
      startedAtMs: 1_700_000_000_000,
    });
    const info = await getInfo(req, ctx);
    expect(runner.done).toBe(true);
    expect(info.capabilities).toMatchObject({
      wireguard: WireGuardImpl.USERSPACE,
      wireguardGoPath: "/usr/bin/wireguard-go",
      wgTool: true,
      nftables: true,
      audit: true,
      netns: true,
      cgroupV2: false,
      tun: true,
      ociRuntime: false,
    });
    expect(info.allowedInterfaces).toEqual(["plexd7"]);
    expect(info.pid).toBe(process.pid);
    expect(info.problems?.some((p) => p.includes("cgroup v2"))).toBe(true);
    expect(info.problems?.some((p) => p.includes("OCI"))).toBe(true);
    expect(info.problems?.some((p) => p.includes("WireGuard"))).toBe(false);
  });

  it("reports the kernel module without probing when it is loaded, and NONE problems otherwise", async () => {
    const runner = new TranscriptRunner([{ cmd: ["nft", "list", "tables"], result: fail("Operation not permitted", 1) }]);
    const getInfo = makeGetInfo({
      runner,
      host: host(["/sys/module/wireguard", "/sys/fs/cgroup/cgroup.controllers"], ["nft", "runc"]),
      config: privConfigFrom({}),
      startedAtMs: 0,
    });
    const info = await getInfo(req, ctx);
    expect(runner.done).toBe(true);
    expect(info.capabilities).toMatchObject({ wireguard: WireGuardImpl.KERNEL, nftables: false, wgTool: false, netns: false, cgroupV2: true, ociRuntime: true });
    expect(info.problems?.some((p) => p.startsWith("nftables unusable"))).toBe(true);
    // Cached: a second call runs no commands (the transcript is exhausted and would throw).
    await expect(getInfo(req, ctx)).resolves.toMatchObject({ allowedInterfaces: ["plexd0"] });
  });
});
