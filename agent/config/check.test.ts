import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { checkConfigFile } from "./check.js";

const tmp = mkdtempSync(join(tmpdir(), "plexd-check-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("checkConfigFile", () => {
  test("valid file: exit 0 and a one-line summary", () => {
    const f = join(tmp, "ok.yaml");
    writeFileSync(f, "api: https://cp.example.com\nmesh:\n  listen_port: 51999\n");
    expect(checkConfigFile(f, {})).toEqual({
      exitCode: 0,
      output: `config OK: ${f} (api https://cp.example.com, mode node, mesh plexd0:51999, data_dir /var/lib/plexd)`,
    });
  });

  test("-o json: one object with the issues as data", () => {
    const f = join(tmp, "json.yaml");
    writeFileSync(f, "api: https://cp.example.com\nmesh:\n  listen_port: 0\n");
    const r = checkConfigFile(f, {}, true);
    expect(r.exitCode).toBe(2);
    expect(JSON.parse(r.output)).toEqual({ file: f, ok: false, issues: [{ path: "mesh.listen_port", message: expect.any(String) as string, received: 0 }] });
    writeFileSync(f, "api: https://cp.example.com\n");
    expect(JSON.parse(checkConfigFile(f, {}, true).output)).toEqual({ file: f, ok: true, issues: [] });
  });

  test("environment overrides apply as for plexd up", () => {
    const f = join(tmp, "env.yaml");
    writeFileSync(f, "api: https://cp.example.com\n");
    expect(checkConfigFile(f, { PLEXD_MODE: "bridge" }).output).toContain("mode bridge");
    expect(checkConfigFile(f, { PLEXD_MODE: "hub" })).toEqual({ exitCode: 2, output: 'mode: must be one of: node, bridge (got "hub") [from env PLEXD_MODE]' });
  });

  test("invalid file: exit 2 and every issue, one per line", () => {
    const f = join(tmp, "bad.yaml");
    writeFileSync(f, "api: http://cp.example.com\nmesh:\n  listen_port: 70000\n  bogus: 1\n");
    const r = checkConfigFile(f, {});
    expect(r.exitCode).toBe(2);
    expect(r.output.split("\n").sort()).toEqual(
      [
        'api: must use https:// (http:// is allowed only for loopback hosts: 127.0.0.0/8, ::1, localhost) (got "http://cp.example.com")',
        "mesh.bogus: unknown key",
        "mesh.listen_port: must be 1–65535 (got 70000)",
      ].sort(),
    );
  });

  test("missing file: exit 2", () => {
    const f = join(tmp, "missing.yaml");
    expect(checkConfigFile(f, {})).toEqual({ exitCode: 2, output: `${f}: cannot read: ENOENT` });
  });
});
