// deploy/cloud-init/: both templates, filled in as docs/cloud-init.md says, pass
// `cloud-init schema` (Debian's cloud-init, offline), the configuration they write passes plexd's
// check, and the full template's install step is run with curl replaced by a stub that hands it
// a recording install script.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { deployDir, plexdConfigProblems, requireTool, withTempDir } from "./deploy-lib.js";

const templates = { full: join(deployDir, "cloud-init", "plexd-full.yaml"), minimal: join(deployDir, "cloud-init", "plexd-minimal.yaml") };
const variables = ["PLEXD_API_URL", "PLEXD_BOOTSTRAP_TOKEN", "PLEXD_VERSION", "PLEXD_HOSTNAME", "PLEXD_LOG_LEVEL", "PLEXD_ARTIFACT_URL"] as const;
type Vars = Partial<Record<(typeof variables)[number], string>>;

/** What `envsubst '$PLEXD_API_URL ...'` does: only the listed ${NAME}s, unset ones become empty. */
function fill(template: string, vars: Vars): string {
  return template.replace(/\$\{(PLEXD_[A-Z_]+)\}/g, (m, name: string) => ((variables as readonly string[]).includes(name) ? (vars[name as keyof Vars] ?? "") : m));
}

function schemaCheck(text: string): { ok: boolean; out: string } {
  const bin = requireTool("cloud-init", "cloud-init");
  return withTempDir((dir) => {
    const file = join(dir, "user-data");
    writeFileSync(file, text);
    const r = spawnSync(bin, ["schema", "--config-file", file], { encoding: "utf8" });
    return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
  });
}

interface WriteFile { path: string; owner: string; permissions: string; content: string }
interface CloudConfig { write_files: WriteFile[]; runcmd?: string[][] }
const fileOf = (c: CloudConfig, path: string): WriteFile => {
  const f = c.write_files.find((w) => w.path === path);
  if (f === undefined) throw new Error(`template writes no ${path}`);
  return f;
};

const required: Vars = { PLEXD_API_URL: "https://cp.example.com", PLEXD_BOOTSTRAP_TOKEN: "bt_0123456789abcdef" };

describe("deploy/cloud-init templates", () => {
  for (const [name, file] of Object.entries(templates)) {
    const template = readFileSync(file, "utf8");

    it(`${name}: starts with #cloud-config and uses only the documented variables`, () => {
      expect(template.startsWith("#cloud-config\n")).toBe(true);
      const used = new Set([...template.matchAll(/\$\{(PLEXD_[A-Z_]+)\}/g)].map((m) => m[1]));
      for (const v of used) expect(variables).toContain(v);
    });

    it(`${name}: filled in, it passes cloud-init schema`, () => {
      const r = schemaCheck(fill(template, required));
      expect(r.out).toMatch(/Valid cloud-config/);
      expect(r.ok).toBe(true);
    });

    // (cloud-init allows unknown top-level keys, so the mutations are inside write_files.)
    it(`${name}: a broken copy is refused by cloud-init schema`, () => {
      const filled = fill(template, required);
      for (const broken of [filled.replace('permissions: "0600"', "permissions: 600").replace('permissions: "0640"', "permissions: 640"), filled.replace("    owner: root", "    ownr: root")]) {
        expect(broken).not.toBe(filled);
        expect(schemaCheck(broken).ok).toBe(false);
      }
    });
  }

  it("minimal: writes only the token, root:plexd 0640", () => {
    const c = parse(fill(readFileSync(templates.minimal, "utf8"), required)) as CloudConfig;
    expect(c.write_files).toEqual([{ path: "/etc/plexd/bootstrap-token", owner: "root:plexd", permissions: "0640", content: "bt_0123456789abcdef\n" }]);
    expect(c.runcmd).toBeUndefined();
  });

  const full = (vars: Vars): CloudConfig => parse(fill(readFileSync(templates.full, "utf8"), { ...required, ...vars })) as CloudConfig;

  it("full: config and token are root-only until plexd install hands them to group plexd", () => {
    const c = full({});
    for (const p of ["/etc/plexd/config.yaml", "/etc/plexd/bootstrap-token"]) expect(fileOf(c, p)).toMatchObject({ owner: "root:root", permissions: "0600" });
    expect(fileOf(c, "/etc/plexd/bootstrap-token").content).toBe("bt_0123456789abcdef\n");
  });

  it("full: the config it writes passes plexd's check, with and without a log level", () => {
    for (const level of ["", "debug"]) {
      const c = full({ PLEXD_LOG_LEVEL: level });
      const envLine = fileOf(c, "/etc/plexd/environment").content.trim();
      expect(envLine).toBe(`PLEXD_LOG_LEVEL=${level}`);
      expect(plexdConfigProblems(fileOf(c, "/etc/plexd/config.yaml").content, { PLEXD_LOG_LEVEL: level })).toEqual([]);
    }
    // The same check fails for a bad value: it is not vacuous.
    const c = full({ PLEXD_API_URL: "ftp://cp.example.com" });
    expect(plexdConfigProblems(fileOf(c, "/etc/plexd/config.yaml").content).join("\n")).toMatch(/api: must be an absolute https:\/\/ URL/);
    expect(plexdConfigProblems(fileOf(full({}), "/etc/plexd/config.yaml").content, { PLEXD_LOG_LEVEL: "loud" }).join("\n")).toMatch(/log_level/);
  });

  /** Runs the full template's runcmd against a temp config file; curl is a stub serving a recording install.sh. */
  function runInstallStep(vars: Vars): { config: string; curlArgs: string[]; installArgs: string[]; artifactUrl: string } {
    requireTool("sh", "dash");
    return withTempDir((dir) => {
      const c = full(vars);
      const script = c.runcmd?.[0]?.[2];
      expect(c.runcmd?.[0]?.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
      if (script === undefined) throw new Error("full template has no runcmd script");
      const config = join(dir, "config.yaml");
      writeFileSync(config, fileOf(c, "/etc/plexd/config.yaml").content);
      const bin = join(dir, "bin");
      mkdirSync(bin);
      const record = (n: string) => join(dir, n);
      const installer = `#!/bin/sh\nprintf '%s\\n' "$@" > ${record("install-args")}\nprintf '%s' "$PLEXD_ARTIFACT_URL" > ${record("artifact-url")}\n`;
      writeFileSync(
        join(bin, "curl"),
        `#!/bin/sh\nprintf '%s\\n' "$@" > ${record("curl-args")}\nout=\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\ncat > "$out" <<'EOF'\n${installer}EOF\n`,
      );
      chmodSync(join(bin, "curl"), 0o755);
      const r = spawnSync("/bin/sh", ["-c", script.replaceAll("/etc/plexd/config.yaml", config)], { encoding: "utf8", env: { PATH: `${bin}:/usr/bin:/bin` } });
      expect(r.status, r.stderr).toBe(0);
      const lines = (n: string) => readFileSync(record(n), "utf8").split("\n").filter((l) => l !== "");
      return { config: readFileSync(config, "utf8"), curlArgs: lines("curl-args"), installArgs: lines("install-args"), artifactUrl: readFileSync(record("artifact-url"), "utf8") };
    });
  }

  it("full: with the optional variables empty it installs the latest version from the default location", () => {
    const r = runInstallStep({});
    expect(r.curlArgs).toContain("https://artifacts.plexsphere.io/plexd/install.sh");
    expect(r.installArgs).toEqual(["--version", "latest"]);
    expect(r.artifactUrl).toBe("https://artifacts.plexsphere.io/plexd");
    expect(r.config).not.toMatch(/registration/);
    expect(plexdConfigProblems(r.config)).toEqual([]);
  });

  it("full: the optional variables reach install.sh and the config, which still passes plexd's check", () => {
    const r = runInstallStep({ PLEXD_VERSION: "1.2.3", PLEXD_HOSTNAME: "edge-01.example.com", PLEXD_ARTIFACT_URL: "https://mirror.example.com/plexd" });
    expect(r.curlArgs).toContain("https://mirror.example.com/plexd/install.sh");
    expect(r.installArgs).toEqual(["--version", "1.2.3"]);
    expect(r.artifactUrl).toBe("https://mirror.example.com/plexd");
    expect(parse(r.config)).toMatchObject({ registration: { hostname: "edge-01.example.com" } });
    expect(plexdConfigProblems(r.config)).toEqual([]);
    // The token never reaches install.sh's argv.
    expect([...r.installArgs, ...r.curlArgs].join(" ")).not.toContain("bt_0123456789abcdef");
  });
});
