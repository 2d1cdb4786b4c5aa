import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildInfo, version, versionLine } from "./version.js";

describe("version", () => {
  it("is package.json's, with the build stamps of an unbundled run", () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string };
    expect(version).toBe(pkg.version);
    // Only scripts/build.mjs defines these; tests run the sources (test/e2e checks the bundle).
    expect(buildInfo).toEqual({ version: pkg.version, commit: "dev", buildDate: "dev" });
    expect(Object.isFrozen(buildInfo)).toBe(true);
    expect(versionLine("plexd")).toBe(`plexd ${pkg.version} (commit dev, built dev)`);
  });
});
