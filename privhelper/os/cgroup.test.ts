import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createHookCgroup } from "./cgroup.js";

// The cgroup files a hook run writes, against a directory standing in for the cgroup v2 mount
// (the machines these tests run on may have no cpu or memory controller in theirs).
let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "plexd-cgroup-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const read = (...p: string[]) => readFile(join(root, ...p), "utf8");

describe("hook cgroups", () => {
  it("enables the controllers down to the slice, and writes cpu.max (cores × period) and memory.max", async () => {
    await writeFile(join(root, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids\n");
    const cg = (await createHookCgroup("run-1", { cpu: 0.5, memoryBytes: 64n * 1024n * 1024n }, root))!;
    expect(cg.path).toBe(join(root, "plexd-hooks.slice", "run-1"));
    expect(await read("cgroup.subtree_control")).toBe("+cpu +memory");
    expect(await read("plexd-hooks.slice", "cgroup.subtree_control")).toBe("+cpu +memory");
    expect(await read("plexd-hooks.slice", "run-1", "cpu.max")).toBe("50000 100000");
    expect(await read("plexd-hooks.slice", "run-1", "memory.max")).toBe(String(64 * 1024 * 1024));
    await cg.add(4242);
    expect(await read("plexd-hooks.slice", "run-1", "cgroup.procs")).toBe("4242");
    expect(await cg.pids()).toEqual([4242]);
    await cg.kill();
    expect(await read("plexd-hooks.slice", "run-1", "cgroup.kill")).toBe("1");
  });

  it("a tiny cpu share still gets a quota of 1 ms per period; only the asked controller is enabled", async () => {
    await writeFile(join(root, "cgroup.controllers"), "cpu memory\n");
    await createHookCgroup("run-2", { cpu: 0.001, memoryBytes: 0n }, root);
    expect(await read("plexd-hooks.slice", "run-2", "cpu.max")).toBe("1000 100000");
    expect(await read("plexd-hooks.slice", "cgroup.subtree_control")).toBe("+cpu");
    expect(await readdir(join(root, "plexd-hooks.slice", "run-2"))).toEqual(["cpu.max"]);
  });

  it("without limits: a cgroup with no limit files and no controller enabled", async () => {
    await writeFile(join(root, "cgroup.controllers"), "\n");
    const cg = (await createHookCgroup("run-3", { cpu: 0, memoryBytes: 0n }, root))!;
    expect(await readdir(cg.path)).toEqual([]);
    await expect(read("cgroup.subtree_control")).rejects.toThrow(/ENOENT/);
    await cg.remove();
    expect(await readdir(join(root, "plexd-hooks.slice"))).toEqual([]);
  });

  it("limits without their controller are sandbox_unavailable, naming the controllers missing; nothing is created", async () => {
    await writeFile(join(root, "cgroup.controllers"), "hugetlb\n");
    await expect(createHookCgroup("run-4", { cpu: 1, memoryBytes: 1n << 20n }, root)).rejects.toThrow("sandbox_unavailable: no cgroup v2 cpu and memory controller for the hook's resources");
    await expect(createHookCgroup("run-4", { cpu: 0, memoryBytes: 1n << 20n }, root)).rejects.toThrow("sandbox_unavailable: no cgroup v2 memory controller for the hook's resources");
    expect(await readdir(root)).toEqual(["cgroup.controllers"]);
  });
});
