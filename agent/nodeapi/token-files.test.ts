import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readReaderTokenFile, readSecretsTokenFile, secretsTokenFileProblem } from "./token-files.js";

describe("secrets token file ownership and mode", () => {
  const agent = 999;
  it.each([
    [agent, 0o600],
    [agent, 0o400],
    [0, 0o600],
    [0, 0o400],
  ])("trusts owner uid %i with mode %o", (uid, mode) => {
    expect(secretsTokenFileProblem("/t", { uid, mode: 0o100000 | mode }, agent)).toBeUndefined();
  });

  it.each([
    [agent, 0o640, "mode 0640"],
    [0, 0o640, "mode 0640"],
    [agent, 0o604, "mode 0604"],
    [agent, 0o610, "mode 0610"],
    [1234, 0o600, "owner uid 1234"],
  ])("refuses owner uid %i with mode %o", (uid, mode, what) => {
    const p = secretsTokenFileProblem("/etc/plexd/node-api-secrets-token", { uid, mode: 0o100000 | mode }, agent);
    expect(p).toContain("/etc/plexd/node-api-secrets-token");
    expect(p).toContain(what);
    expect(p).toMatch(/owned by the agent's user \(uid 999\) or root and grant nothing to group or others/);
  });
});

describe("token files on disk", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "plexd-tokens-"));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function tokenFile(name: string, mode: number, content = "t0ken\n"): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, content);
    await chmod(path, mode);
    return path;
  }

  it("a group-readable secrets token is refused with the key path, file and mode; 0600 is read", async () => {
    const lax = await tokenFile("lax", 0o640);
    const r = await readSecretsTokenFile(lax, "node_api.http.secrets_token_file");
    expect(r).toEqual({ ok: false, issue: expect.stringMatching(new RegExp(`^node_api\\.http\\.secrets_token_file: ${lax} has owner uid \\d+ and mode 0640; `)) });
    expect(await readSecretsTokenFile(await tokenFile("tight", 0o600), "k")).toEqual({ ok: true, token: "t0ken" });
  });

  it("a missing or empty secrets token file is refused, not thrown", async () => {
    expect(await readSecretsTokenFile(join(dir, "missing"), "k")).toMatchObject({ ok: false, issue: expect.stringContaining("cannot be read") });
    expect(await readSecretsTokenFile(await tokenFile("empty", 0o600, "\n"), "k")).toMatchObject({ ok: false, issue: expect.stringContaining("is empty") });
  });

  it("the reader token may be group-readable but not world-readable", async () => {
    expect(await readReaderTokenFile(await tokenFile("group", 0o640))).toBe("t0ken");
    await expect(readReaderTokenFile(await tokenFile("world", 0o644))).rejects.toThrow(/world-readable/);
  });
});
