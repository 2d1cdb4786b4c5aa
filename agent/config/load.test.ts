import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { ConfigError, DEFAULT_CONFIG_FILE, loadConfig, parseConfigText, resolveConfigFile } from "./load.js";

const tmp = mkdtempSync(join(tmpdir(), "plexd-config-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function file(text: string): string {
  const p = join(tmp, `c${n++}.yaml`);
  writeFileSync(p, text);
  return p;
}

function issues(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.format().split("\n");
  }
  throw new Error("expected a ConfigError");
}

const base = `api: https://file.example.com
mode: node
log_level: warn
actions:
  enabled: false
  max_concurrent: 3
hooks:
  dir: /etc/plexd/file-hooks
node_api:
  http:
    enabled: false
`;

describe("precedence: flag > env > file > default", () => {
  test("file beats default, and sources say so", () => {
    const r = loadConfig({ file: file(base), env: {} });
    expect(r.config.api).toBe("https://file.example.com");
    expect(r.config.log_level).toBe("warn");
    expect(r.config.actions.max_concurrent).toBe(3);
    expect(r.config.actions.enabled).toBe(false);
    expect(r.sources["api"]).toBe("file");
    expect(r.sources["actions.max_concurrent"]).toBe("file");
    expect(r.sources["mesh.listen_port"]).toBe("default");
    expect(r.sources["heartbeat.interval"]).toBe("default");
    expect(r.sources["registration.metadata"]).toBe("default");
  });

  test("env beats file (strings, ints, booleans in every accepted spelling)", () => {
    const f = file(base);
    const env = {
      PLEXD_API: "https://env.example.com",
      PLEXD_LOG_LEVEL: "error",
      PLEXD_ACTIONS_MAX_CONCURRENT: "9",
      PLEXD_ACTIONS_ENABLED: "1",
      PLEXD_HOOKS_DIR: "/opt/hooks",
      PLEXD_NODE_API_HTTP_ENABLED: "true",
      PLEXD_NODE_API_HTTP_LISTEN: "127.0.0.1:9911",
      PLEXD_NODE_API_SOCKET: "/run/plexd/n1/api.sock",
      PLEXD_BOOTSTRAP_TOKEN_FILE: "/run/secrets/token",
      PLEXD_HOOKS_ENABLED: "0",
      PLEXD_NODE_API_ENABLED: "false",
    };
    const r = loadConfig({ file: f, env });
    expect(r.config.api).toBe("https://env.example.com");
    expect(r.config.log_level).toBe("error");
    expect(r.config.actions.max_concurrent).toBe(9);
    expect(r.config.actions.enabled).toBe(true);
    expect(r.config.hooks.dir).toBe("/opt/hooks");
    expect(r.config.hooks.enabled).toBe(false);
    expect(r.config.node_api.enabled).toBe(false);
    expect(r.config.node_api.http.enabled).toBe(true);
    expect(r.config.node_api.http.listen).toBe("127.0.0.1:9911");
    expect(r.config.node_api.socket).toBe("/run/plexd/n1/api.sock");
    expect(r.config.token.file).toBe("/run/secrets/token");
    expect(r.sources["api"]).toBe("env");
    expect(r.sources["actions.enabled"]).toBe("env");
    expect(r.sources["node_api.http.listen"]).toBe("env");
    expect(r.sources["mode"]).toBe("file");
  });

  test("flag beats env", () => {
    const r = loadConfig({
      file: file(base),
      env: { PLEXD_API: "https://env.example.com", PLEXD_MODE: "node", PLEXD_LOG_LEVEL: "error" },
      flags: { api: "http://127.0.0.1:8080", mode: "bridge", logLevel: "debug" },
    });
    expect(r.config.api).toBe("http://127.0.0.1:8080");
    expect(r.config.mode).toBe("bridge");
    expect(r.config.log_level).toBe("debug");
    expect(r.sources["api"]).toBe("flag");
    expect(r.sources["mode"]).toBe("flag");
    expect(r.sources["log_level"]).toBe("flag");
  });

  test("env supplies the required api when the file has none; empty variables count as unset", () => {
    const f = file("mesh:\n  listen_port: 51999\n");
    expect(loadConfig({ file: f, env: { PLEXD_API: "https://env.example.com" } }).config.api).toBe("https://env.example.com");
    expect(issues(() => loadConfig({ file: f, env: { PLEXD_API: "" } }))).toEqual(["api: required"]);
  });

  test("variables not listed in docs/config-reference.md are ignored", () => {
    const r = loadConfig({ file: file(base), env: { PLEXD_MESH_LISTEN_PORT: "1", PLEXD_MESH_INTERFACE: "eth0" } });
    expect(r.config.mesh.listen_port).toBe(51820);
    expect(r.config.mesh.interface).toBe("plexd0");
  });

  test("an unparsable env value is an error naming the variable, listed with the file's own issues", () => {
    const f = file(`${base}mesh:\n  listen_port: 0\n`);
    const lines = issues(() =>
      loadConfig({ file: f, env: { PLEXD_ACTIONS_ENABLED: "yes", PLEXD_ACTIONS_MAX_CONCURRENT: "2x", PLEXD_NODE_API_HTTP_ENABLED: "TRUE" } }),
    );
    expect(lines.sort()).toEqual(
      [
        'PLEXD_ACTIONS_ENABLED: must be true, false, 1 or 0 (got "yes")',
        'PLEXD_ACTIONS_MAX_CONCURRENT: must be an integer (got "2x")',
        'PLEXD_NODE_API_HTTP_ENABLED: must be true, false, 1 or 0 (got "TRUE")',
        "mesh.listen_port: must be 1–65535 (got 0)",
      ].sort(),
    );
  });

  test("an unparsable env value fails even when the file is valid", () => {
    expect(issues(() => loadConfig({ file: file(base), env: { PLEXD_HOOKS_ENABLED: "on" } }))).toEqual([
      'PLEXD_HOOKS_ENABLED: must be true, false, 1 or 0 (got "on")',
    ]);
  });

  test("a well-typed override that fails validation says where it came from", () => {
    const f = file(base);
    // The file disables actions, so their range checks are off until the variable turns them on.
    expect(loadConfig({ file: f, env: { PLEXD_ACTIONS_MAX_CONCURRENT: "0" } }).config.actions.max_concurrent).toBe(0);
    expect(issues(() => loadConfig({ file: f, env: { PLEXD_ACTIONS_MAX_CONCURRENT: "0", PLEXD_ACTIONS_ENABLED: "true" } }))).toEqual([
      "actions.max_concurrent: must be at least 1 (got 0) [from env PLEXD_ACTIONS_MAX_CONCURRENT]",
    ]);
    expect(issues(() => loadConfig({ file: f, env: {}, flags: { mode: "router" } }))).toEqual([
      'mode: must be one of: node, bridge (got "router") [from flag --mode]',
    ]);
    expect(issues(() => loadConfig({ file: f, env: { PLEXD_NODE_API_SOCKET: "/tmp/api.sock" } }))).toEqual([
      'node_api.socket: must be an absolute path inside /run/plexd (got "/tmp/api.sock") [from env PLEXD_NODE_API_SOCKET]',
    ]);
  });
});

describe("file selection and reading", () => {
  test("opts.file, then PLEXD_CONFIG, then the default path", () => {
    expect(resolveConfigFile({ file: "/a.yaml", env: { PLEXD_CONFIG: "/b.yaml" } })).toBe("/a.yaml");
    expect(resolveConfigFile({ env: { PLEXD_CONFIG: "/b.yaml" } })).toBe("/b.yaml");
    expect(resolveConfigFile({ env: {} })).toBe(DEFAULT_CONFIG_FILE);
    expect(DEFAULT_CONFIG_FILE).toBe("/etc/plexd/config.yaml");
    const f = file(base);
    expect(loadConfig({ env: { PLEXD_CONFIG: f } }).file).toBe(f);
  });

  test("a missing file is an error", () => {
    const missing = join(tmp, "nope.yaml");
    expect(issues(() => loadConfig({ file: missing, env: {} }))).toEqual([`${missing}: cannot read: ENOENT`]);
  });

  test("a directory is an error too", () => {
    expect(issues(() => loadConfig({ file: tmp, env: {} }))).toEqual([`${tmp}: cannot read: EISDIR`]);
  });

  test("an empty file only lacks api", () => {
    expect(issues(() => loadConfig({ file: file(""), env: {} }))).toEqual(["api: required"]);
    expect(issues(() => loadConfig({ file: file("# just a comment\n"), env: {} }))).toEqual(["api: required"]);
  });

  test("YAML errors carry line and column", () => {
    const lines = issues(() => parseConfigText("api: https://x.example\nmesh:\n\tlisten_port: 1\n", "mem.yaml", { env: {} }));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/^mem\.yaml:\d+:\d+: YAML syntax error: /);
    expect(lines[0]).toMatch(/^mem\.yaml:3:1: /);
  });

  test("anchors and aliases resolve; unresolved aliases are reported", () => {
    const ok = parseConfigText("api: https://x.example\nobserve:\n  batch_interval: &b 7s\nlogs:\n  batch_interval: *b\n", "m.yaml", { env: {} });
    expect(ok.config.logs.batch_interval).toEqual({ text: "7s", ms: 7000 });
    expect(issues(() => parseConfigText("api: *nope\n", "m.yaml", { env: {} }))[0]).toMatch(/^m\.yaml/);
  });
});

describe("the full example", () => {
  const full = join(fileURLToPath(new URL(".", import.meta.url)), "testdata", "full.yaml");

  test("parses and keeps every non-default value", () => {
    const { config: c, sources } = loadConfig({ file: full, env: {} });
    expect(c.mode).toBe("bridge");
    expect(c.token.metadata_timeout).toEqual({ text: "1500ms", ms: 1500 });
    expect(c.registration.metadata).toEqual({ rack: "r12", zone: "eu-1" });
    expect(c.mesh).toEqual({ interface: "plexd-edge", listen_port: 51830, mtu: 1420, persistent_keepalive: { text: "15s", ms: 15_000 }, allow_default_route: true, min_route_prefix_v4: 16, min_route_prefix_v6: 48, full_tunnel_table: 200 });
    expect(c.nat_traversal.stun_servers).toHaveLength(3);
    expect(c.logs.filters).toEqual([{ unit: "nginx" }, { path: "/var/log/app/*.log" }, { severity: "warn" }]);
    const [restart, snapshot, uptime] = c.hooks.definitions;
    expect(restart?.resources).toEqual({ cpu: 0.5, memory: { text: "256M", bytes: 256 * 1024 * 1024 } });
    expect(restart?.parameters.map((p) => p.default)).toEqual([null, "10", "false"]);
    expect(restart?.sandbox_options).toEqual({
      writable_paths: ["/tmp", "/var/lib/app"],
      mount_proc: false,
      allowed_devices: ["/dev/fuse"],
      image: "",
      network: "none",
      capabilities: [],
    });
    expect(snapshot?.timeout).toEqual({ text: "1m", ms: 60_000 });
    expect(snapshot?.sandbox_options.network).toBe("host");
    expect(uptime?.sandbox).toBe("none");
    expect(c.bridge.access.map((a) => a.type)).toEqual(["wireguard", "tailscale", "netbird"]);
    expect(c.bridge.access[2]).toEqual({ type: "netbird", setup_key_env: "NB_SETUP_KEY" });
    expect(c.bridge.site_to_site_defaults).toEqual({ interface_prefix: "wg-s-", listen_port: 52000, max_tunnels: 4 });
    expect(c.privhelper.socket).toBe("/run/plexd-priv/edge/privhelper.sock");
    // Every section in the example was written by hand, so nothing fell back to a default
    // except the keys the example leaves out on purpose.
    const defaulted = Object.entries(sources).filter(([, s]) => s === "default").map(([k]) => k);
    expect(defaulted).toEqual([]);
  });
});
