import { closeSync, openSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { processRunner } from "./run.js";

// The runner privhelper starts every `ip`, `nft` and `wg` with, on real programs: each way a
// run can end is a result or a PlexdError with its code, never an unhandled rejection.
describe("processRunner", () => {
  it("passes input on stdin and returns stdout, stderr and the exit code", async () => {
    const r = await processRunner.run("sh", ["-c", 'cat; echo oops >&2; echo "$LC_ALL"'], { input: "hello\n" });
    expect(r).toEqual({ stdout: "hello\nC\n", stderr: "oops\n", exitCode: 0 });
  });

  it("keeps privhelper's PATH, so the tools in /usr/sbin are found", async () => {
    expect((await processRunner.run("sh", ["-c", 'printf %s "$PATH"'])).stdout).toBe(process.env.PATH);
  });

  it("fails on a non-zero exit with the command and its stderr, unless failure is allowed", async () => {
    await expect(processRunner.run("sh", ["-c", "echo bad table >&2; exit 3"])).rejects.toMatchObject({ code: "internal", message: "sh -c echo bad table >&2; exit 3: exit 3: bad table" });
    expect((await processRunner.run("sh", ["-c", "exit 3"], { allowFailure: true })).exitCode).toBe(3);
  });

  it("says a missing program did not run, even when failure is allowed", async () => {
    await expect(processRunner.run("/nonexistent/plexd-test-tool", [], { allowFailure: true })).rejects.toMatchObject({ code: "internal", message: expect.stringContaining("did not run") as unknown });
  });

  it("kills a program past its timeout (deadline_exceeded)", async () => {
    const t = performance.now();
    await expect(processRunner.run("sleep", ["5"], { timeoutMs: 100 })).rejects.toMatchObject({ code: "deadline_exceeded" });
    expect(performance.now() - t).toBeLessThan(3_000);
  });

  it("ends a read whose caller went away as cancelled", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await expect(processRunner.run("sleep", ["5"], { signal: ac.signal })).rejects.toMatchObject({ code: "cancelled", message: "sleep: cancelled" });
  });

  it("reports a program killed by a signal", async () => {
    await expect(processRunner.run("sh", ["-c", "kill -9 $$"])).rejects.toMatchObject({ code: "internal", message: expect.stringContaining("killed by SIGKILL") as unknown });
  });

  it("hands an open descriptor to the program as its stdin", async () => {
    const fd = openSync("/etc/passwd", "r");
    try {
      const r = await processRunner.run("cat", [], { stdinFd: fd });
      expect(r.stdout.length).toBeGreaterThan(0);
    } finally {
      closeSync(fd);
    }
  });

  it("survives a program that exits before reading its input", async () => {
    const r = await processRunner.run("true", [], { input: "x".repeat(1 << 20) });
    expect(r.exitCode).toBe(0);
  });
});
