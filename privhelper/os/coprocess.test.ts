// The batch coprocess: answers framed by line count, the child restarted after it ends,
// deadlines and cancellation that never leave a half-answered child behind. Real children
// (node, and iproute2's own `ip -batch`, which only reads here).
import { describe, expect, it } from "vitest";
import { Coprocess } from "./coprocess.js";
import { execaRunner } from "./runner.js";

// Echoes each line upper-cased; "fail" exits 3 after a message on stderr; "hang" answers nothing.
const script = `
let buf = "";
process.stdin.on("data", (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf("\\n")) !== -1) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    if (line === "fail") { process.stderr.write("bad line\\n"); process.exit(3); }
    if (line !== "hang") process.stdout.write(line.toUpperCase() + "\\n");
  }
});`;
const lines = (n: number) => (out: string) => out.split("\n").length - 1 >= n;

describe("Coprocess", () => {
  it("answers many requests from one child", async () => {
    const co = new Coprocess(process.execPath, ["-e", script]);
    try {
      for (let i = 0; i < 20; i++) {
        const r = await co.exchange(`a${i}\nb${i}\n`, { complete: lines(2), timeoutMs: 5000 });
        expect(r).toEqual({ stdout: `A${i}\nB${i}\n`, stderr: "", exitCode: 0 });
      }
      expect(co.starts).toBe(1);
    } finally {
      co.close();
    }
  });

  it("serialises concurrent requests so each gets its own answer", async () => {
    const co = new Coprocess(process.execPath, ["-e", script]);
    try {
      const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => co.exchange(`x${i}\n`, { complete: lines(1), timeoutMs: 5000 })));
      expect(rs.map((r) => r.stdout)).toEqual(Array.from({ length: 10 }, (_, i) => `X${i}\n`));
    } finally {
      co.close();
    }
  });

  it("reports a child that exits mid-request like a failed run, then starts a new one", async () => {
    const co = new Coprocess(process.execPath, ["-e", script]);
    try {
      const r = await co.exchange("ok\nfail\n", { complete: lines(2), timeoutMs: 5000 });
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toBe("bad line\n");
      expect(r.stdout).toBe("OK\n");
      const again = await co.exchange("next\n", { complete: lines(1), timeoutMs: 5000 });
      expect(again.stdout).toBe("NEXT\n");
      expect(co.starts).toBe(2);
    } finally {
      co.close();
    }
  });

  it("kills a child that misses its deadline, and a cancelled one; the next request is clean", async () => {
    const co = new Coprocess(process.execPath, ["-e", script]);
    try {
      await expect(co.exchange("hang\n", { complete: lines(1), timeoutMs: 300 })).rejects.toMatchObject({ code: "deadline_exceeded" });
      const ac = new AbortController();
      const pending = co.exchange("hang\n", { complete: lines(1), timeoutMs: 5000, signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await expect(pending).rejects.toMatchObject({ code: "cancelled" });
      const r = await co.exchange("after\n", { complete: lines(1), timeoutMs: 5000 });
      expect(r.stdout).toBe("AFTER\n");
      expect(co.starts).toBe(3);
    } finally {
      co.close();
    }
  });
});

describe("system runner batch (ip -batch)", () => {
  it("returns exactly the answers asked for, without the sentinel, from a reused ip", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await execaRunner.batch("ip", ["-d", "-j", "-batch", "-"], ["addr show dev lo", "route show dev lo"], { answers: 2, timeoutMs: 10_000 });
      const [link, routes, rest] = r.stdout.split("\n");
      // Addresses still listed on every round: the sentinel must not switch ip into link mode.
      const lo = (JSON.parse(link!) as { ifname: string; addr_info?: { local: string }[] }[])[0];
      expect(lo?.ifname).toBe("lo");
      expect(lo?.addr_info?.map((a) => a.local)).toContain("127.0.0.1");
      expect(Array.isArray(JSON.parse(routes!))).toBe(true);
      expect(rest).toBe("");
    }
  });

  it("a failing line ends the batch with ip's error; allowFailure returns it, otherwise it throws", async () => {
    const r = await execaRunner.batch("ip", ["-d", "-j", "-batch", "-"], ["addr show dev plexd-none0"], { answers: 1, timeoutMs: 10_000, allowFailure: true });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/does not exist/);
    await expect(execaRunner.batch("ip", ["-d", "-j", "-batch", "-"], ["addr show dev plexd-none0"], { answers: 1, timeoutMs: 10_000 })).rejects.toThrow(/does not exist/);
    const ok = await execaRunner.batch("ip", ["-d", "-j", "-batch", "-"], ["addr show dev lo"], { answers: 1, timeoutMs: 10_000 });
    expect(ok.stdout).toMatch(/"ifname":"lo"/);
  });
});
