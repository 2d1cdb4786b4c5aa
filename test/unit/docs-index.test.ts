import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "./imports.js";

// docs/README.md is the one index operators start from: a page not linked there is a page
// nobody finds.

describe("docs/README.md", () => {
  it("links every page in docs/", () => {
    const index = readFileSync(join(root, "docs/README.md"), "utf8");
    const pages = readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md") && f !== "README.md");
    expect(pages.length).toBeGreaterThan(5);
    const missing = pages.filter((p) => !index.includes(`](${p})`));
    expect(missing, "add these pages to docs/README.md").toEqual([]);
  });
});
