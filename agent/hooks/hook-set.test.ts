import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { signChecksum } from "../../proto/lib/hook-signature.js";
import { rawPublicKey } from "../../proto/lib/keys.js";
import { parseConfig } from "../config/schema.js";
import type { PrivClient } from "../privclient/client.js";
import { createLogger } from "../util/log.js";
import { HookSet, paramEnvName, type Violation } from "./hook-set.js";

// HookSet against a described privhelper (HashFiles answers from a table); signatures are
// real files in a temp hooks.dir.

const dir = mkdtempSync(join(tmpdir(), "plexd-hookset-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sum = (c: string) => `sha256:${c.repeat(64)}`;
const log = createLogger({ name: "test", level: "silent" });

function setup(o: { files: Record<string, { checksum: string; problem: string } | "down">; hooks?: Record<string, unknown> }) {
  const config = parseConfig({
    api: "https://cp.invalid",
    hooks: { dir, definitions: Object.keys(o.files).map((n) => ({ name: n, path: join(dir, `${n}.sh`), parameters: [{ name: "x_y", type: "string" }] })), ...o.hooks },
  });
  const priv = {
    hashFiles: async (req: { paths: string[] }) => {
      if (req.paths.some((p) => o.files[p.slice(dir.length + 1, -3)] === "down")) throw new Error("unavailable: privhelper down");
      return { files: req.paths.map((p) => o.files[p.slice(dir.length + 1, -3)]) };
    },
  } as unknown as PrivClient;
  const violations: Violation[] = [];
  let changes = 0;
  const hooks = new HookSet({ config: () => config, priv, log, nodeId: () => "n_1", reportViolation: async (v) => void violations.push(v), onChange: () => changes++ });
  return { hooks, violations, changes: () => changes };
}

describe("HookSet", () => {
  it("announces each declared hook, an unavailable one with an empty checksum; changes are announced", async () => {
    const files = { ok: { checksum: sum("a"), problem: "" }, bad: { checksum: "", problem: "file is writable by group or others" } };
    const { hooks, changes } = setup({ files });
    await hooks.scan("startup");
    expect(hooks.announced()).toEqual([
      { name: "ok", description: "", source: "script", checksum: sum("a"), parameters: [{ name: "x_y", type: "string", required: false, description: "" }], timeout: "30s", sandbox: "namespaced", signed: false },
      expect.objectContaining({ name: "bad", checksum: "" }),
    ]);
    expect(changes()).toBe(0); // the first scan goes out with registration
    await hooks.scan("again");
    expect(changes()).toBe(0);
    files.ok.checksum = sum("b");
    await hooks.scan("inotify");
    expect(changes()).toBe(1);
  });

  it("verifies against the announced and the requested checksum, and reports violations", async () => {
    const files = { h: { checksum: sum("a"), problem: "" } };
    const { hooks, violations } = setup({ files });
    await hooks.scan("startup");
    expect(await hooks.verify("h", undefined, AbortSignal.timeout(1000))).toEqual({ ok: true });
    expect(await hooks.verify("h", sum("a"), AbortSignal.timeout(1000))).toEqual({ ok: true });
    expect(await hooks.verify("h", sum("c"), AbortSignal.timeout(1000))).toMatchObject({ ok: false, detail: expect.stringContaining("differs from the requested") });
    files.h.checksum = sum("d");
    expect(await hooks.verify("h", undefined, AbortSignal.timeout(1000))).toMatchObject({ ok: false, detail: "checksum changed since the last scan" });
    expect(violations.map((v) => [v.expected_checksum, v.actual_checksum])).toEqual([
      [sum("a"), sum("a")],
      [sum("a"), sum("d")],
    ]);
  });

  it("refuses, without reporting a violation, when privhelper cannot check the file", async () => {
    const files: Record<string, { checksum: string; problem: string } | "down"> = { h: { checksum: sum("a"), problem: "" } };
    const { hooks, violations } = setup({ files });
    await hooks.scan("startup");
    files.h = "down";
    expect(await hooks.verify("h", undefined, AbortSignal.timeout(1000))).toMatchObject({ ok: false, detail: expect.stringContaining("could not be checked") });
    expect(violations).toEqual([]);
  });

  it("require_signature: only a hook signed by a trusted key is announced, and marked signed", async () => {
    const [k1, k2, k3] = [0, 1, 2].map(() => generateKeyPairSync("ed25519").privateKey);
    writeFileSync(join(dir, "good.sh.sig"), signChecksum(sum("a"), k2!).sig);
    writeFileSync(join(dir, "foreign.sh.sig"), signChecksum(sum("a"), k3!).sig);
    writeFileSync(join(dir, "stale.sh.sig"), signChecksum(sum("0"), k1!).sig);
    const file = { checksum: sum("a"), problem: "" };
    const { hooks } = setup({ files: { good: file, foreign: file, stale: file, none: file }, hooks: { trusted_keys: [rawPublicKey(k1!), rawPublicKey(k2!)], require_signature: true } });
    await hooks.scan("startup");
    const by = Object.fromEntries(hooks.list().map((s) => [s.def.name, s]));
    expect(by.good).toMatchObject({ checksum: sum("a"), signed: true, problem: "" });
    expect(by.foreign).toMatchObject({ checksum: "", signed: false, problem: expect.stringContaining("signature not by a trusted key") });
    expect(by.stale).toMatchObject({ checksum: "", signed: false });
    expect(by.none).toMatchObject({ checksum: "", signed: false, problem: expect.stringContaining("unsigned (no ") });
  });

  it("names parameter variables as documented", () => {
    expect(paramEnvName("msg")).toBe("PLEXD_PARAM_MSG");
    expect(paramEnvName("x-y.z")).toBe("PLEXD_PARAM_X_Y_Z");
  });
});
