import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FakeHost, ipRead } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../../test/support/transcript.js";
import { ipTool } from "../os/ip.js";
import { createInterface, destroyInterface, findWireguardGo, uapiSocket } from "./device.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-device-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const tun = { kind: "tun", up: false, mtu: 1420, addrs: [] };
const addKernel = (result = ok()): TranscriptEntry => ({ cmd: ["ip", "link", "add", "plexd0", "type", "wireguard"], result });
const noKernelWg = addKernel(fail("Error: Unknown device type.\n", 2));

function deps(transcript: TranscriptEntry[], host = new FakeHost({ bins: ["wireguard-go"] })) {
  const runner = new TranscriptRunner(transcript);
  return { runner, host, d: { runner, host, ip: ipTool(runner, 51820), runDir: dir } };
}
/** What starting wireguard-go does: a process serving the name, and its socket. */
const starts = (host: FakeHost, pid = 31337) => () => {
  host.procs.push({ pid, argv: ["/usr/bin/wireguard-go", "-f", "plexd0"] });
  host.files.add(uapiSocket("plexd0"));
};

describe("createInterface", () => {
  it("kernel WireGuard first", async () => {
    const { runner, d } = deps([addKernel()]);
    expect(await createInterface(d, "plexd0")).toBe("kernel");
    expect(runner.done).toBe(true);
  });

  it("else wireguard-go in the foreground, detached, its output in the runtime directory; ready once its socket and link are there", async () => {
    const host = new FakeHost({ bins: ["wireguard-go"] });
    const { runner, d } = deps([noKernelWg, { cmd: ["spawn", "/usr/bin/wireguard-go", "-f", "plexd0"], result: ok("31337"), effect: starts(host) }, ipRead("plexd0", tun)], host);
    expect(await createInterface(d, "plexd0")).toBe("userspace");
    expect(runner.done).toBe(true);
    expect(runner.ran[1]?.logFile).toBe(join(dir, "wireguard-go-plexd0.log"));
  });

  it("under systemd, wireguard-go gets a unit of its own, so privhelper's cgroup does not take it down", async () => {
    const host = new FakeHost({ bins: ["wireguard-go"], files: ["/run/systemd/system"] });
    const { runner, d } = deps(
      [noKernelWg, { cmd: ["systemd-run", "--collect", "--unit=plexd-wireguard-go-plexd0", "--property=Restart=no", "--property=CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW", "/usr/bin/wireguard-go", "-f", "plexd0"], result: ok(), effect: starts(host) }, ipRead("plexd0", tun)],
      host,
    );
    expect(await createInterface(d, "plexd0")).toBe("userspace");
    expect(runner.done).toBe(true);
  });

  it("no WireGuard anywhere is FAILED_PRECONDITION", async () => {
    const { d } = deps([noKernelWg], new FakeHost());
    await expect(createInterface(d, "plexd0")).rejects.toMatchObject({ code: "failed_precondition" });
  });

  it("a wireguard-go that never brings the device up is INTERNAL, pointing at its output", async () => {
    const { d } = deps([noKernelWg, { cmd: ["spawn", "/usr/bin/wireguard-go", "-f", "plexd0"], result: ok("5") }]);
    await expect(createInterface(d, "plexd0")).rejects.toMatchObject({ code: "internal", message: expect.stringContaining(join(dir, "wireguard-go-plexd0.log")) });
  });
});

describe("findWireguardGo / destroyInterface", () => {
  it("finds only wireguard-go serving this name in privhelper's own network namespace", async () => {
    const host = new FakeHost();
    host.procs = [
      { pid: 1, argv: ["/usr/bin/wireguard-go", "-f", "plexd0"] },
      { pid: 2, argv: ["wireguard-go", "plexd0"] },
      { pid: 3, argv: ["wireguard-go", "-f", "plexd0"], netns: "net:[9]" },
      { pid: 4, argv: ["wireguard-go", "-f", "plexd01"] },
      { pid: 5, argv: ["/usr/bin/wg", "plexd0"] },
    ];
    expect(await findWireguardGo(host, "plexd0")).toEqual([1, 2]);
  });

  it("stops wireguard-go (which takes its link along), then removes its output file", async () => {
    const { runner, host, d } = deps([ipRead("plexd0", undefined)]);
    host.procs = [{ pid: 1, argv: ["wireguard-go", "-f", "plexd0"] }];
    await writeFile(join(dir, "wireguard-go-plexd0.log"), "x");
    expect(await destroyInterface(d, "plexd0")).toEqual(["wireguard-go pid 1", "interface plexd0"]);
    expect(runner.done).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });

  it("deletes a kernel link; a missing one is nothing to remove", async () => {
    const a = deps([ipRead("plexd0", { up: true, mtu: 1420, addrs: [] }), { cmd: ["ip", "link", "del", "plexd0"], result: ok() }]);
    expect(await destroyInterface(a.d, "plexd0")).toEqual(["interface plexd0"]);
    const b = deps([ipRead("plexd0", undefined)]);
    expect(await destroyInterface(b.d, "plexd0")).toEqual([]);
    expect(a.runner.done && b.runner.done).toBe(true);
  });
});
