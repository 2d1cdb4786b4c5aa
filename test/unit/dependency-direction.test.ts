import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { importsOf, root } from "./imports.js";

// docs/architecture.md#dependency-direction: privhelper imports only proto/ and itself; cli imports only the node-API
// client (proto/ and itself); nothing imports mockcp except tests and the demo; the agent
// never imports cli, privhelper or mockcp. docs/architecture.md#dependency-direction: test fixtures live in test trees,
// so a *.test.ts beside the code may also import test/support/, and production code never.

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

/** The repository path an import resolves to, or undefined for packages. */
function targetPath(file: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  return relative(root, resolve(root, dirname(file), spec));
}

/** Top-level project directory an import resolves to, or undefined for packages. */
function targetDir(file: string, spec: string): string | undefined {
  return targetPath(file, spec)?.split("/")[0];
}

const isTestFile = (file: string): boolean => /\.test\.tsx?$/.test(file);

const rules: Record<string, { allowed: string[] }> = {
  privhelper: { allowed: ["privhelper", "proto"] },
  cli: { allowed: ["cli", "proto"] },
  agent: { allowed: ["agent", "proto"] },
  mockcp: { allowed: ["mockcp", "proto"] },
  // package.json: proto/lib/version.ts reads the one version string from it.
  proto: { allowed: ["proto", "package.json"] },
};

// Tests beside the code may also use the shared fixtures in test/support (docs/architecture.md#dependency-direction);
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
      if (target === undefined || allowed.includes(target)) continue;
      if (isTestFile(file) && targetPath(file, spec)?.startsWith("test/support/")) continue;
      bad.push(`${file} imports ${spec} (${target}/)`);
    }
  }
  return bad;
}

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { dependencies: Record<string, string> };

/** The npm package an import names (`@scope/name` or `name`), or undefined for relative and node: imports. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith(".") || spec.startsWith("node:")) return undefined;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
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
    expect(targetPath("agent/nodeapi/server.test.ts", "../../test/support/x.js")).toBe("test/support/x.js");
    expect(packageOf("@bufbuild/protobuf/wkt")).toBe("@bufbuild/protobuf");
    expect(packageOf("react/jsx-runtime")).toBe("react");
    expect(packageOf("node:fs")).toBeUndefined();
  });

  it("production code imports only runtime dependencies and node: built-ins", () => {
    // Devices install dependencies only; a devDependency (vitest, fast-check) or a bare
    // built-in name in production code would fail there, not here.
    const notRuntime = (spec: string): boolean => {
      const p = packageOf(spec);
      return p !== undefined && !(p in pkg.dependencies);
    };
    const offenders = Object.keys(rules).flatMap((d) =>
      sourceFiles(d)
        .filter((f) => !isTestFile(f))
        .flatMap((f) => importsOf(f).filter(notRuntime).map((s) => `${f} -> ${s}`)),
    );
    expect(offenders).toEqual([]);
  });

  it("a module in a production tree is used by production code, not only by tests", () => {
    // Fixtures and fakes belong in test/support/. Entry points have no importers.
    const documented = new Set([
      "mockcp/launch.ts", // mockcp's launcher for its own binary, part of its API (docs/mockcp.md)
      "cli/entry.ts", // the plexd executable's entry point (scripts/build.mjs), a main.ts by another name
    ]);
    const moduleOf = (path: string): string => path.replace(/\.(js|ts|tsx)$/, "");
    const importers = new Map<string, string[]>();
    for (const f of [...Object.keys(rules), "test"].flatMap((d) => sourceFiles(d))) {
      for (const spec of importsOf(f)) {
        const t = targetPath(f, spec);
        if (t !== undefined) importers.set(moduleOf(t), [...(importers.get(moduleOf(t)) ?? []), f]);
      }
    }
    const testOnly = Object.keys(rules)
      .flatMap((d) => sourceFiles(d))
      .filter((f) => !isTestFile(f) && !f.endsWith("/main.ts") && !documented.has(f))
      .filter((f) => (importers.get(moduleOf(f)) ?? []).every((i) => isTestFile(i) || i.startsWith("test/")));
    expect(testOnly).toEqual([]);
  });

  it("only test/ may import mockcp", () => {
    const offenders = ["agent", "cli", "privhelper", "proto"].flatMap((d) =>
      sourceFiles(d).flatMap((f) => importsOf(f).filter((s) => targetDir(f, s) === "mockcp").map((s) => `${f} -> ${s}`)),
    );
    expect(offenders).toEqual([]);
  });
});
