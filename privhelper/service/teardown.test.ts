import { describe, expect, it } from "vitest";
import { privConfigFrom } from "../config.js";
import { createLock } from "../lock.js";
import { AppliedSpecs } from "../mesh/base.js";
import { createLogger } from "../log.js";
import type { Host } from "../os/host.js";
import { ipTool } from "../os/ip.js";
import { TranscriptRunner, fail, ok } from "../os/runner.js";
import { wgTool } from "../os/wg.js";
import { makeTeardown } from "./teardown.js";

const noTable = (family: string, name: string) => fail(`Error: No such file or directory\nlist table ${family} ${name}\n`, 1);

/** Teardown over a transcript, with no wireguard-go running and `nft` installed. */
function teardownWith(runner: TranscriptRunner, nft = true) {
  const host: Host = {
    exists: () => Promise.resolve(false),
    which: (n) => Promise.resolve(nft && n === "nft" ? "/usr/sbin/nft" : undefined),
    processes: () => Promise.resolve([]),
    netns: () => Promise.resolve("net:[1]"),
    kill: () => true,
    sleep: () => Promise.resolve(),
  };
  return makeTeardown({ runner, host, ip: ipTool(runner), wgFor: () => Promise.resolve(wgTool(runner)), config: privConfigFrom({}), log: createLogger("silent"), lock: createLock(), applied: new AppliedSpecs(), logDir: "/tmp" });
}
const call = { signal: new AbortController().signal, caller: "test" };
// No plexd interface: the configured one (plexd0) is still looked up, and is absent.
const noLinks = [
  { cmd: ["ip", "-j", "link", "show"], result: ok(JSON.stringify([{ ifname: "lo" }, { ifname: "eth0" }])) },
  { cmd: ["ip", "-d", "-j", "addr", "show", "dev", "plexd0"], result: fail('Device "plexd0" does not exist.', 1) },
];

describe("Teardown (transcript)", () => {
  it("removes only allow-listed interfaces, their wireguard-go, table inet plexd and a stray table ip plexd_stun", async () => {
    let wgGo = [{ pid: 77, argv: ["wireguard-go", "-f", "plexd0"] }, { pid: 78, argv: ["wireguard-go", "-f", "plexd0"] }, { pid: 79, argv: ["wireguard-go", "-f", "other0"] }];
    const killed: number[] = [];
    const host: Host = {
      exists: () => Promise.resolve(false),
      which: (n) => Promise.resolve(n === "nft" ? "/usr/sbin/nft" : undefined),
      processes: () => Promise.resolve(wgGo),
      // pid 78 serves a plexd0 in another network namespace: not ours to stop
      netns: (pid) => Promise.resolve(pid === 78 ? "net:[2]" : "net:[1]"),
      kill: (pid) => {
        killed.push(pid);
        wgGo = wgGo.filter((p) => p.pid !== pid);
        return true;
      },
      sleep: () => Promise.resolve(),
    };
    const runner = new TranscriptRunner([
      { cmd: ["ip", "-j", "link", "show"], result: ok(JSON.stringify([{ ifname: "lo" }, { ifname: "eth0" }, { ifname: "plexd0" }, { ifname: "plexdx" }])) },
      // the TUN link went away with its wireguard-go
      { cmd: ["ip", "-d", "-j", "addr", "show", "dev", "plexd0"], result: fail('Device "plexd0" does not exist.', 1) },
      { cmd: ["nft", "list", "table", "inet", "plexd"], result: ok("table inet plexd {\n}\n") },
      { cmd: ["nft", "delete", "table", "inet", "plexd"], result: ok() },
      // left by a privhelper killed between adding and removing its probe table
      { cmd: ["nft", "list", "table", "ip", "plexd_stun"], result: ok("table ip plexd_stun {\n\tchain postrouting {\n\t}\n}\n") },
      { cmd: ["nft", "delete", "table", "ip", "plexd_stun"], result: ok() },
    ]);
    const teardown = makeTeardown({
      runner,
      host,
      ip: ipTool(runner),
      wgFor: () => Promise.resolve(wgTool(runner)),
      config: privConfigFrom({}),
      log: createLogger("silent"),
      lock: createLock(),
    applied: new AppliedSpecs(),
      logDir: "/tmp",
    });
    const res = await teardown({ purge: true } as never, { signal: new AbortController().signal, caller: "test" });
    expect(runner.done).toBe(true);
    expect(killed).toEqual([77]);
    expect(res.removed).toEqual(["wireguard-go pid 77", "interface plexd0", "table inet plexd", "table ip plexd_stun"]);
    expect(res.errors).toEqual([]);
  });

  it("deletes no table that is not there (a clean host: only look-ups run)", async () => {
    const runner = new TranscriptRunner([
      ...noLinks,
      { cmd: ["nft", "list", "table", "inet", "plexd"], result: noTable("inet", "plexd") },
      { cmd: ["nft", "list", "table", "ip", "plexd_stun"], result: noTable("ip", "plexd_stun") },
    ]);
    const res = await teardownWith(runner)({ purge: false } as never, call);
    expect(runner.done).toBe(true);
    expect(res).toEqual({ removed: [], errors: [] });
  });

  it("still removes table ip plexd_stun when removing table inet plexd fails, and reports the failure", async () => {
    const runner = new TranscriptRunner([
      ...noLinks,
      { cmd: ["nft", "list", "table", "inet", "plexd"], result: ok("table inet plexd {\n}\n") },
      { cmd: ["nft", "delete", "table", "inet", "plexd"], result: fail("Error: Could not process rule: Device or resource busy", 1) },
      { cmd: ["nft", "list", "table", "ip", "plexd_stun"], result: ok("table ip plexd_stun {\n}\n") },
      { cmd: ["nft", "delete", "table", "ip", "plexd_stun"], result: ok() },
    ]);
    const res = await teardownWith(runner)({ purge: true } as never, call);
    expect(runner.done).toBe(true);
    expect(res.removed).toEqual(["table ip plexd_stun"]);
    expect(res.errors).toHaveLength(1);
    expect(res.errors?.[0]).toMatch(/^table inet plexd: nft delete table inet plexd: exit 1: .*busy/);
  });

  it("touches no table at all without nft", async () => {
    const runner = new TranscriptRunner(noLinks);
    expect(await teardownWith(runner, false)({ purge: true } as never, call)).toEqual({ removed: [], errors: [] });
    expect(runner.done).toBe(true);
  });
});
