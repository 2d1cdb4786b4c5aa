import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { WatchAuditRequest } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { FakeHost } from "../../test/support/privhelper.js";
import { makeWatchAudit, NetlinkSplitter, socatArgv } from "./watch-audit.js";

// Bytes socat wrote from this machine's audit multicast group (a user message, then a
// CONFIG_CHANGE event of four records ending in EOE).
const recorded = join(import.meta.dirname, "../../agent/telemetry/audit/testdata/live-user-config.bin");
const ctx = (signal = new AbortController().signal) => ({ signal, uid: 0, pid: 1 });
const req = (types: number[] = []) => ({ types }) as unknown as WatchAuditRequest;

function collect(host: FakeHost, argv: string[], types: number[] = [], signal?: AbortSignal) {
  const got: { type?: number; serial?: number; text?: string }[] = [];
  const done = makeWatchAudit({ host, argv })(req(types), ctx(signal), async (r) => void got.push(r));
  return { got, done };
}

describe("WatchAudit", () => {
  it("holds the netlink socket through socat bound to the read-only group, never sending", () => {
    expect(socatArgv.join(" ")).toBe("socat -u -b 65536 SOCKET-RECV:16:3:9:x00000000000001000000 STDOUT");
  });

  it("streams each recorded netlink message as { type, serial, text }, untouched", async () => {
    const { got, done } = collect(new FakeHost({ bins: ["cat"] }), ["cat", recorded]);
    await done;
    expect(got.map((r) => [r.type, r.serial])).toEqual([
      [1005, 6],
      [1305, 7],
      [1300, 7],
      [1327, 7],
      [1320, 7],
    ]);
    expect(got[1]!.text).toBe("audit(1796322584.888:7): op=set audit_enabled=0 old=1 auid=4294967295 ses=4294967295 res=1");
  });

  it("forwards only the requested types", async () => {
    const { got, done } = collect(new FakeHost({ bins: ["cat"] }), ["cat", recorded], [1300, 1320]);
    await done;
    expect(got.map((r) => r.type)).toEqual([1300, 1320]);
  });

  it("splits messages across chunk boundaries and refuses an impossible length", () => {
    const bytes = readFileSync(recorded);
    const s = new NetlinkSplitter();
    const out = [...bytes].flatMap((_, i) => s.push(bytes.subarray(i, i + 1)));
    expect(out).toHaveLength(5);
    const bad = Buffer.alloc(16);
    bad.writeUInt32LE(3, 0);
    expect(() => new NetlinkSplitter().push(bad)).toThrow(/impossible message length 3/);
  });

  it("refuses bad filters, a foreign network namespace, a missing reader and a third watcher", async () => {
    const host = new FakeHost({ bins: ["cat", "sleep"] });
    const watch = makeWatchAudit({ host, argv: ["sleep", "30"] });
    await expect(watch(req([999]), ctx(), async () => undefined)).rejects.toThrow(/1000-2999/);
    const foreign = new FakeHost({ bins: ["socat"] });
    foreign.netns = (pid) => Promise.resolve(pid === "self" ? "net:[9]" : "net:[1]"); // kthreadd (PID 2) is in net:[1]
    await expect(makeWatchAudit({ host: foreign })(req(), ctx(), async () => undefined)).rejects.toMatchObject({ code: "unavailable", message: /initial network namespace/ });
    await expect(makeWatchAudit({ host: new FakeHost() })(req(), ctx(), async () => undefined)).rejects.toMatchObject({ code: "unavailable", message: /socat is not installed/ });
    const ac = new AbortController();
    const two = [watch(req(), ctx(ac.signal), async () => undefined), watch(req(), ctx(ac.signal), async () => undefined)];
    await expect(watch(req(), ctx(), async () => undefined)).rejects.toMatchObject({ code: "resource_exhausted" });
    // Both handlers are attached before the abort: a rejection without one is reported as unhandled.
    const cancelled = two.map((w) => expect(w).rejects.toMatchObject({ code: "cancelled" }));
    ac.abort();
    await Promise.all(cancelled);
  });

  it("in a PID namespace (no kernel thread visible) it cannot tell the network namespace, so it opens the socket", async () => {
    const host = new FakeHost({ bins: ["cat"] });
    host.procs.push({ pid: 2, argv: ["/usr/bin/app"], netns: "net:[5]" }); // PID 2 is a user process: no kthreadd
    host.netns = (pid) => Promise.resolve(pid === "self" ? "net:[9]" : "net:[5]");
    const { got, done } = collect(host, ["cat", recorded]);
    await done;
    expect(got).toHaveLength(5);
  });

  it("says why the reader ended", async () => {
    const { done } = collect(new FakeHost({ bins: ["sh"] }), ["sh", "-c", "echo 'socat[1] E socket(16, 3, 9): Protocol not supported' >&2; exit 1"]);
    await expect(done).rejects.toMatchObject({ code: "unavailable", message: /exit 1.*Protocol not supported/ });
  });
});
