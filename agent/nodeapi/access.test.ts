import { describe, expect, it } from "vitest";
import { procGroups } from "./access.js";

describe("caller groups", () => {
  it("supplementary groups come from /proc/<pid>/status", async () => {
    const groups = await procGroups(process.pid);
    expect(groups.every((g) => Number.isInteger(g))).toBe(true);
    // process.getgroups() may add the effective gid; the kernel's list is the rest.
    const expected = new Set(process.getgroups!());
    for (const g of groups) expect(expected.has(g)).toBe(true);
    for (const g of expected) if (g !== process.getegid!()) expect(groups).toContain(g);
  });
});
