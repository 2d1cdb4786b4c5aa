import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { importsOf, root } from "./imports.js";

// design.md 4.2: privhelper imports only proto/ and itself; cli imports only the node-API
// client (proto/ and itself); nothing imports mockcp except tests and the demo; the agent
// never imports cli, privhelper or mockcp.


function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name);
    if (name === "node_modules" || name === "gen") continue;
    if (statSync(join(root, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (/\.(ts|tsx)$/.test(name)) out.push(rel);
  }
  return out;
}

/** Top-level project directory an import resolves to, or undefined for packages. */
function targetDir(file: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  const abs = resolve(root, dirname(file), spec);
  return relative(root, abs).split("/")[0];
}

const rules: Record<string, { allowed: string[] }> = {
  privhelper: { allowed: ["privhelper", "proto"] },
  cli: { allowed: ["cli", "proto"] },
  agent: { allowed: ["agent", "proto"] },
  mockcp: { allowed: ["mockcp", "proto"] },
  proto: { allowed: ["proto"] },
};

// Tests beside the code may also use the shared fixtures in test/support (design.md 4.13);
// every production module is held to its direction.
function violations(dir: string): string[] {
  const bad: string[] = [];
  const allowed = rules[dir]?.allowed ?? [];
  for (const file of sourceFiles(dir)) {
    if (/\.test\.tsx?$/.test(file)) {
      for (const spec of importsOf(file)) {
        const target = targetDir(file, spec);
        if (target !== undefined && !allowed.includes(target) && !resolve(root, dirname(file), spec).startsWith(join(root, "test/support/"))) bad.push(`${file} imports ${spec} (${target}/)`);
      }
      continue;
    }
    for (const spec of importsOf(file)) {
      const target = targetDir(file, spec);
      if (target !== undefined && !allowed.includes(target)) bad.push(`${file} imports ${spec} (${target}/)`);
    }
  }
  return bad;
}

describe("dependency direction", () => {
  for (const dir of Object.keys(rules)) {
    it(`${dir}/ imports only ${rules[dir]?.allowed.join(", ")}`, () => {
      expect(violations(dir)).toEqual([]);
    });
  }

  it("the checker itself catches a forbidden import", () => {
    // Guards against a regex that silently matches nothing.
    expect(importsOf("cli/main.ts")).toContain("./handoff.js");
    expect(targetDir("cli/commands/x.ts", "../../agent/config/load.js")).toBe("agent");
    expect(targetDir("privhelper/server.ts", "../mockcp/server.js")).toBe("mockcp");
  });

  it("only test/ may import mockcp", () => {
    const offenders = ["agent", "cli", "privhelper", "proto"].flatMap((d) =>
      sourceFiles(d).flatMap((f) => importsOf(f).filter((s) => targetDir(f, s) === "mockcp").map((s) => `${f} -> ${s}`)),
    );
    expect(offenders).toEqual([]);
  });
});
