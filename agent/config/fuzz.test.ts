import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { stringify } from "yaml";
import { ConfigError } from "./config-error.js";
import { parseConfigText } from "./load.js";

// The config file is root-owned but hand-written: whatever it holds, loading must end either
// in a frozen config or in a ConfigError — never a TypeError or a zod/yaml exception.
function loadsOrConfigError(text: string, env: NodeJS.ProcessEnv = {}): void {
  try {
    const { config, sources } = parseConfigText(text, "fuzz.yaml", { env });
    expect(Object.isFrozen(config)).toBe(true);
    expect(typeof config.api).toBe("string");
    expect(Object.keys(sources).length).toBeGreaterThan(50);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    expect(err.issues.length).toBeGreaterThan(0);
    for (const line of err.format().split("\n")) expect(line).toMatch(/^\S.*: .+/);
  }
}

const keys = [
  "api", "log_level", "mode", "data_dir", "control_plane", "connect_timeout", "request_timeout", "token", "file", "env", "metadata",
  "registration", "hostname", "mesh", "interface", "listen_port", "mtu", "persistent_keepalive", "heartbeat", "interval", "policy",
  "enabled", "chain_name", "nat_traversal", "stun_servers", "observe", "batch_max_size", "buffer_size", "metrics", "logs", "filters",
  "unit", "path", "severity", "sources", "audit", "access", "ssh", "kubernetes", "actions", "default_timeout", "max_action_timeout",
  "hooks", "dir", "definitions", "name", "parameters", "type", "default", "timeout", "sandbox", "sandbox_options", "resources",
  "memory", "cpu", "node_api", "http", "token_file", "bridge", "relay", "ingress", "site_to_site", "site_to_site_defaults",
  "access_subnets", "remote_endpoint", "privhelper", "socket", "__proto__", "constructor", "toString",
];
const scalars = fc.oneof(
  fc.constantFrom("https://cp.example.com", "http://127.0.0.1:1", "30s", "1h30m", "0s", "bridge", "node", "wireguard", "ipsec", "int", "bool",
    "/etc/plexd/hooks.d/x", "/run/plexd/a.sock", "plexd0", "host:1", "[::1]:2", "512M", "10.0.0.0/8", "", "true", "debug"),
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalars, fc.array(tie("tree"), { maxLength: 4 }), tie("obj")),
  obj: fc.dictionary(fc.constantFrom(...keys), tie("tree"), { maxKeys: 6 }),
}));
const document = fc.dictionary(fc.constantFrom(...keys), tree, { maxKeys: 8 });

const envArb = fc.dictionary(
  fc.constantFrom("PLEXD_API", "PLEXD_MODE", "PLEXD_ACTIONS_ENABLED", "PLEXD_ACTIONS_MAX_CONCURRENT", "PLEXD_NODE_API_HTTP_ENABLED", "PLEXD_HOOKS_DIR"),
  fc.oneof(fc.string(), fc.constantFrom("1", "0", "true", "https://x.example", "bridge", "99999999999999999999")),
);

describe("config fuzzing: only ConfigError escapes", () => {
  test("random text", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 300 }), (t) => loadsOrConfigError(t)), { numRuns: 400 });
  });

  test("random documents built from real key names, with random env", () => {
    fc.assert(
      fc.property(document, envArb, (doc, env) => loadsOrConfigError(stringify(doc), env)),
      { numRuns: 600 },
    );
  });

  test("arbitrary YAML values", () => {
    fc.assert(fc.property(fc.anything(), (v) => loadsOrConfigError(stringify(v) ?? "")), { numRuns: 300 });
  });

  test("mutations of the full example", () => {
    const full = readFileSync(join(fileURLToPath(new URL(".", import.meta.url)), "testdata", "full.yaml"), "utf8");
    const lines = full.split("\n");
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(lines.length - 1), fc.string({ maxLength: 12 }), fc.nat(40)), { minLength: 1, maxLength: 4 }), (edits) => {
        const copy = [...lines];
        for (const [i, s, at] of edits) {
          const l = copy[i] ?? "";
          copy[i] = l.slice(0, at) + s + l.slice(at + s.length);
        }
        loadsOrConfigError(copy.join("\n"));
      }),
      { numRuns: 400 },
    );
  });

  test("alias bombs and cycles are contained", () => {
    loadsOrConfigError("api: &a [*a]\nmesh: &m {x: *m}\n");
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 12; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(", ")}]`);
    loadsOrConfigError(bomb.join("\n"));
  });
});
