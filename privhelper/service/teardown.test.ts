import { describe, expect, it } from "vitest";
import { privConfigFrom } from "../config.js";
import { createLock } from "../lock.js";
import { createLogger } from "../log.js";
import type { Host } from "../os/host.js";
import { ipTool } from "../os/ip.js";
import { TranscriptRunner, fail, ok } from "../os/runner.js";
import { wgTool } from "../os/wg.js";
import { makeTeardown } from "./teardown.js";

describe("Teardown (transcript)", () => {
  it("removes only allow-listed interfaces, their wireguard-go, and table inet plexd", async () => {
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
    ]);
    const teardown = makeTeardown({
      runner,
      host,
      ip: ipTool(runner),
      wgFor: () => Promise.resolve(wgTool(runner)),
      config: privConfigFrom({}),
      log: createLogger("silent"),
      lock: createLock(),
      logDir: "/tmp",
    });
    const res = await teardown({ purge: true } as never, { signal: new AbortController().signal, caller: "test" });
    expect(runner.done).toBe(true);
    expect(killed).toEqual([77]);
    expect(res.removed).toEqual(["wireguard-go pid 77", "interface plexd0", "table inet plexd"]);
    expect(res.errors).toEqual([]);
  });
});
