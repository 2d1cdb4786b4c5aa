import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generatedPages, renderAll } from "../../scripts/docs/pages.js";
import { root } from "./imports.js";

// The references in docs/ are generated from the zod schema and the protos (scripts/docs/).
// They are committed so they can be read on any forge; this test regenerates them in memory and
// fails while a committed copy differs, so the docs never describe another version.

describe("generated docs", () => {
  const rendered = renderAll(root);

  for (const page of generatedPages) {
    it(`${page.path} is up to date`, () => {
      const committed = readFileSync(join(root, page.path), "utf8");
      const fresh = rendered.get(page.path) ?? "";
      if (committed !== fresh) {
        const a = committed.split("\n");
        const b = fresh.split("\n");
        const line = a.findIndex((l, i) => l !== b[i]);
        expect.fail(`${page.path} is stale (first difference at line ${line + 1}): run \`npm run docs\` and commit the result`);
      }
    });
  }

  it("documents every configuration key", () => {
    // renderConfigReference throws on a key without .meta({ description }); the page lists them all.
    const page = rendered.get("docs/config-reference.md") ?? "";
    for (const key of ["api", "mesh.listen_port", "node_api.http.token_file", "hooks.definitions[].sandbox_options.capabilities", "bridge.access[].type"]) {
      expect(page).toContain(`| \`${key}\` |`);
    }
  });

  it("documents every RPC of both contracts", () => {
    for (const [path, proto] of [["docs/node-api.md", "proto/plexd/node/v1/node.proto"], ["docs/privhelper-api.md", "proto/plexd/priv/v1/priv.proto"]] as const) {
      const rpcs = [...readFileSync(join(root, proto), "utf8").matchAll(/^\s*rpc (\w+)\(/gm)].map((m) => m[1]);
      expect(rpcs.length).toBeGreaterThan(5);
      for (const rpc of rpcs) expect(rendered.get(path)).toMatch(new RegExp(`### \`\\w+\\.${rpc}\``));
    }
  });
});
