import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { socketFromConfig } from "./config-socket.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-cfgsock-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("socketFromConfig", () => {
  it("reads node_api.socket and nothing else", async () => {
    const f = join(dir, "a.yaml");
    await writeFile(f, "api: https://x\nnode_api:\n  socket: /run/plexd/other.sock\n");
    expect(await socketFromConfig(f)).toBe("/run/plexd/other.sock");
  });

  it("falls back (undefined) for a missing file, no key, a relative path or broken YAML", async () => {
    expect(await socketFromConfig(join(dir, "missing.yaml"))).toBeUndefined();
    const f = join(dir, "b.yaml");
    await writeFile(f, "api: https://x\n");
    expect(await socketFromConfig(f)).toBeUndefined();
    await writeFile(f, "node_api:\n  socket: relative.sock\n");
    expect(await socketFromConfig(f)).toBeUndefined();
    await writeFile(f, "node_api: [socket\n");
    expect(await socketFromConfig(f)).toBeUndefined();
  });
});
