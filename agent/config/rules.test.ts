import { describe, expect, test } from "vitest";
import { ConfigError, formatIssue, showValue } from "./config-error.js";
import { parseDuration, parseSize } from "./schema-common.js";
import { type ConfigInput, parseConfig } from "./schema.js";

const api = "https://cp.example.com";

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.format().split("\n");
  }
  return [];
}

describe("durations (the grammar itself is tested in proto/lib/duration.test.ts)", () => {
  test("keep the text the operator wrote beside the milliseconds", () => {
    expect(parseDuration("2m30s250ms")).toEqual({ text: "2m30s250ms", ms: 150_250 });
    expect(Object.isFrozen(parseDuration("1h"))).toBe(true);
    expect(parseDuration("1.5s")).toBeUndefined();
  });
});

describe("sizes", () => {
  test("integers and K/M/G strings, powers of 1024", () => {
    expect(parseSize(1024)).toEqual({ text: "1024", bytes: 1024 });
    expect(parseSize("512M")).toEqual({ text: "512M", bytes: 512 * 1024 ** 2 });
    expect(parseSize("2G")?.bytes).toBe(2 * 1024 ** 3);
    expect(parseSize("4K")?.bytes).toBe(4096);
    for (const bad of ["512MB", "1.5G", "-1", "M", -5, 1.5, true]) expect(parseSize(bad)).toBeUndefined();
  });
});

describe("api URL", () => {
  test.each(["https://cp.example.com", "https://cp.example.com:8443/base", "http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:3000", "http://[::1]:8080"])(
    "accepts %s",
    (u) => expect(problems({ api: u })).toEqual([]),
  );
  test.each([
    ["http://cp.example.com", "must use https://"],
    ["http://128.0.0.1", "must use https://"],
    ["http://localhost.evil.example", "must use https://"],
    ["http://[::2]", "must use https://"],
    ["ftp://cp.example.com", "must be an absolute https:// URL"],
    ["cp.example.com", "must be an absolute https:// URL"],
    ["/relative", "must be an absolute https:// URL"],
    ["https://user:pw@cp.example.com", "must not contain credentials"],
    ["https://cp.example.com/?x=1", "must not contain a query or fragment"],
  ])("rejects %s", (u, why) => {
    const lines = problems({ api: u });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`api: ${why}`);
  });
});

// The grammars are proto/lib/net.ts's (tested in net.test.ts); these check the config uses them.
describe("host:port and CIDR", () => {
  test("host:port accepts names, IPv4 and bracketed IPv6", () => {
    const ok = ["stun.example.com:3478", "STUN.example.com:3478", "[2001:db8::1]:443", "0.0.0.0:443"];
    expect(problems({ api, nat_traversal: { stun_servers: ok } })).toEqual([]);
    for (const bad of ["stun.example.com", "host:0", "host:65536", ":80", "2001:db8::1:443", "[nothost]:80", "a b:1", "host:80x", "999.1.1.1:80"]) {
      expect(problems({ api, nat_traversal: { stun_servers: [bad] } }), bad).toEqual([`nat_traversal.stun_servers[0]: must be host:port with a port 1–65535 (got ${JSON.stringify(bad)})`]);
    }
  });
  test("CIDR", () => {
    const bridge = (subnets: string[]) => ({ api, mode: "bridge", bridge: { access_interface: "eth1", access_subnets: subnets } });
    expect(problems(bridge(["10.0.0.0/8", "0.0.0.0/0", "fd00::/64", "10.1.2.3/32"]))).toEqual([]);
    for (const bad of ["10.0.0.0/33", "10.0.0.0", "fd00::/129", "x/8", "10.0.0.0/-1"]) {
      expect(problems(bridge([bad])), bad).toEqual([`bridge.access_subnets[0]: must be a CIDR such as 10.0.0.0/24 (got ${JSON.stringify(bad)})`]);
    }
  });
});

describe("validation applies only to enabled sections", () => {
  // Each disabled section holds well-typed but out-of-range values and is accepted; the same
  // values with the section enabled are reported.
  const cases: { name: string; section: (enabled: boolean) => ConfigInput; expectWhenOn: string[] }[] = [
    {
      name: "integrity",
      section: (enabled) => ({ api, integrity: { enabled, verify_interval: "1s" } }),
      expectWhenOn: ['integrity.verify_interval: must be at least 30s (got "1s")'],
    },
    {
      name: "policy",
      section: (enabled) => ({ api, policy: { enabled, chain_name: "bad name" } }),
      expectWhenOn: ['policy.chain_name: must be 1–31 characters of A-Z, a-z, 0-9, _ and - (got "bad name")'],
    },
    {
      name: "nat_traversal",
      section: (enabled) => ({ api, nat_traversal: { enabled, stun_servers: ["nope"], timeout: "0s" } }),
      expectWhenOn: ['nat_traversal.stun_servers[0]: must be host:port with a port 1–65535 (got "nope")', 'nat_traversal.timeout: must be greater than 0s (got "0s")'],
    },
    {
      name: "observe",
      section: (enabled) => ({ api, observe: { enabled, interval: "1s", batch_max_size: 0, metrics: ["agent_stats", "agent_stats"] } }),
      expectWhenOn: [
        'observe.interval: must be at least 5s (got "1s")',
        "observe.batch_max_size: must be at least 1 (got 0)",
        'observe.metrics[1]: metric group listed twice (got "agent_stats")',
      ],
    },
    {
      name: "logs",
      section: (enabled) => ({ api, logs: { enabled, sources: ["syslog"], filters: [{ unit: "a", severity: "info" }, {}], max_line_size: 10 } }),
      expectWhenOn: [
        'logs.sources[0]: must be "journald" or an absolute file path (globs allowed) (got "syslog")',
        'logs.filters[0]: must have exactly one of unit, path, severity (got {"unit":"a","severity":"info"})',
        "logs.filters[1]: must have exactly one of unit, path, severity (got {})",
        "logs.max_line_size: must be at least 256 (got 10)",
      ],
    },
    {
      name: "audit",
      section: (enabled) => ({ api, audit: { enabled, kubernetes_log_path: "audit.log" } }),
      expectWhenOn: ['audit.kubernetes_log_path: must be an absolute path (got "audit.log")'],
    },
    {
      name: "access.ssh",
      section: (enabled) => ({ api, access: { ssh: { enabled, idle_timeout: "30s", max_sessions: 0 } } }),
      expectWhenOn: ['access.ssh.idle_timeout: must be at least 1m (got "30s")', "access.ssh.max_sessions: must be at least 1 (got 0)"],
    },
    {
      name: "access.kubernetes",
      section: (enabled) => ({ api, access: { kubernetes: { enabled, api_server: "http://k8s:6443", listen_port: 0 } } }),
      expectWhenOn: ['access.kubernetes.api_server: must be empty (in-cluster address) or https://host:port (got "http://k8s:6443")', "access.kubernetes.listen_port: must be 1–65535 (got 0)"],
    },
    {
      name: "actions",
      section: (enabled) => ({ api, actions: { enabled, max_output_bytes: 10, socket: "/tmp/a.sock" } }),
      expectWhenOn: ["actions.max_output_bytes: must be at least 1024 (got 10)", 'actions.socket: must be an absolute path inside /run/plexd (got "/tmp/a.sock")'],
    },
    {
      name: "hooks",
      section: (enabled) => ({
        api,
        hooks: { enabled, definitions: [{ name: "Bad!", path: "/etc/plexd/hooks.d/a" }, { name: "x", path: "rel" }] },
      }),
      expectWhenOn: [
        'hooks.definitions[0].name: must be 1–63 characters of a-z, 0-9, _ and -, starting with a letter or digit (got "Bad!")',
        'hooks.definitions[1].path: must be an absolute path (got "rel")',
      ],
    },
    {
      name: "node_api",
      section: (enabled) => ({ api, node_api: { enabled, socket: "/var/run/api.sock", report_debounce: "0s" } }),
      expectWhenOn: ['node_api.socket: must be an absolute path inside /run/plexd (got "/var/run/api.sock")', 'node_api.report_debounce: must be greater than 0s (got "0s")'],
    },
    {
      name: "node_api.http",
      section: (enabled) => ({ api, node_api: { http: { enabled, listen: "9100", token_file: "token" } } }),
      expectWhenOn: ['node_api.http.listen: must be host:port with a port 1–65535 (got "9100")', 'node_api.http.token_file: must be an absolute path (got "token")'],
    },
    {
      name: "token.metadata",
      section: (enabled) => ({ api, token: { metadata: enabled, metadata_timeout: "0ms" } }),
      expectWhenOn: ['token.metadata_timeout: must be greater than 0s (got "0ms")'],
    },
    {
      name: "bridge (mode)",
      section: (enabled) => ({
        api,
        mode: enabled ? "bridge" : "node",
        bridge: { relay: { listen_port: 51820 }, site_to_site: [{ name: "o", type: "openvpn", remote_endpoint: "vpn.example:1194" }], access_subnets: ["10.0.0.0/8"] },
      }),
      expectWhenOn: [
        "bridge.relay.listen_port: must differ from mesh.listen_port (51820) (got 51820)",
        'bridge.site_to_site[0].type: unsupported: only wireguard site-to-site tunnels are implemented (got "openvpn")',
        'bridge.access_interface: required when bridge.access_subnets is not empty (got "")',
      ],
    },
    {
      name: "bridge.relay",
      section: (enabled) => ({ api, mode: "bridge", bridge: { relay: { enabled, listen_port: 51820, session_ttl: "1s" } } }),
      expectWhenOn: ["bridge.relay.listen_port: must differ from mesh.listen_port (51820) (got 51820)", 'bridge.relay.session_ttl: must be at least 30s (got "1s")'],
    },
    {
      name: "bridge.ingress",
      section: (enabled) => ({ api, mode: "bridge", bridge: { ingress: { enabled, listen: "*:443", max_rules: 0 } } }),
      expectWhenOn: ['bridge.ingress.listen: must be host:port with a port 1–65535 (got "*:443")', "bridge.ingress.max_rules: must be at least 1 (got 0)"],
    },
  ];

  test.each(cases)("$name", ({ section, expectWhenOn }) => {
    expect(problems(section(false))).toEqual([]);
    expect(problems(section(true)).sort()).toEqual([...expectWhenOn].sort());
  });

  test("type errors are reported even in disabled sections", () => {
    expect(problems({ api, observe: { enabled: false, interval: 15, bogus: 1 } }).sort()).toEqual(
      ["observe.bogus: unknown key", "observe.interval: must be a duration string such as 30s or 1h30m (bare numbers are not allowed) (got 15)"].sort(),
    );
    expect(problems({ api, bridge: { site_to_site: [{ name: "x", type: "gre", remote_endpoint: "a:1" }] } })).toEqual([
      'bridge.site_to_site[0].type: must be one of: wireguard, ipsec, openvpn (got "gre")',
    ]);
  });
});

describe("single-key rules", () => {
  test("persistent_keepalive: 0s or whole seconds 1s–65535s", () => {
    for (const ok of ["0s", "1s", "25s", "65535s", "18h12m15s"]) expect(problems({ api, mesh: { persistent_keepalive: ok } }), ok).toEqual([]);
    for (const bad of ["500ms", "1500ms", "65536s", "24h"]) {
      expect(problems({ api, mesh: { persistent_keepalive: bad } }), bad).toEqual([
        `mesh.persistent_keepalive: must be 0s (disabled) or whole seconds from 1s to 65535s (got "${bad}")`,
      ]);
    }
  });

  test("mtu 0 and 1280–9000; heartbeat 5s–5m bounds inclusive", () => {
    for (const mtu of [0, 1280, 9000]) expect(problems({ api, mesh: { mtu } })).toEqual([]);
    for (const mtu of [1, 1279, 9001]) expect(problems({ api, mesh: { mtu } })).toHaveLength(1);
    for (const interval of ["5s", "5m"]) expect(problems({ api, heartbeat: { interval } })).toEqual([]);
    expect(problems({ api, heartbeat: { interval: "5m1s" } })).toEqual(['heartbeat.interval: must be 5s–5m (got "5m1s")']);
  });

  test("interface names", () => {
    for (const ok of ["plexd", "plexd0", "plexd-a_b", "plexdabcdefghij"]) expect(problems({ api, mesh: { interface: ok } }), ok).toEqual([]);
    for (const bad of ["eth0", "plexd0;rm", "Plexd0", "plexdabcdefghijk", "plexd0 ", "wg0"]) expect(problems({ api, mesh: { interface: bad } }), bad).toHaveLength(1);
  });

  test("node_api.http accepts a non-loopback listen host (warned about at startup, not here)", () => {
    expect(problems({ api, node_api: { http: { enabled: true, listen: "0.0.0.0:9100" } } })).toEqual([]);
  });

  test("hook parameters: names, uniqueness, defaults per type", () => {
    const hook = (parameters: unknown[]) => ({ api, hooks: { definitions: [{ name: "h", path: "/etc/plexd/hooks.d/h", parameters }] } });
    expect(problems(hook([{ name: "n", type: "int", default: "-3" }, { name: "b", type: "bool", default: 1 }, { name: "s", type: "string", default: 12 }]))).toEqual([]);
    expect(problems(hook([{ name: "n", type: "int", default: 1.5 }]))).toEqual([
      'hooks.definitions[0].parameters[0].default: must be an integer to match type int (got "1.5")',
    ]);
    expect(problems(hook([{ name: "a", type: "string" }, { name: "a", type: "int" }, { name: "9x", type: "float" }])).sort()).toEqual(
      [
        'hooks.definitions[0].parameters[1].name: duplicate parameter name (also parameters[0]) (got "a")',
        'hooks.definitions[0].parameters[2].name: must be 1–64 characters of a-z, 0-9 and _, starting with a letter (got "9x")',
        'hooks.definitions[0].parameters[2].type: must be one of: string, bool, int (got "float")',
      ].sort(),
    );
  });

  test("a disabled hooks section may hold duplicate names", () => {
    const defs = [{ name: "a", path: "/etc/plexd/hooks.d/a" }, { name: "a", path: "/etc/plexd/hooks.d/b" }];
    expect(problems({ api, hooks: { enabled: false, definitions: defs } })).toEqual([]);
    expect(problems({ api, hooks: { enabled: true, definitions: defs } })).toHaveLength(1);
  });

  test("site-to-site port range must not overlap other bridge ports", () => {
    expect(problems({ api, mode: "bridge", bridge: { site_to_site_defaults: { listen_port: 51815, max_tunnels: 10 } } }).sort()).toEqual(
      [
        "bridge.site_to_site_defaults.listen_port: port range 51815–51824 overlaps mesh.listen_port (51820) (got 51815)",
      ].sort(),
    );
    expect(problems({ api, mode: "bridge", bridge: { site_to_site_defaults: { listen_port: 65530, max_tunnels: 10 } } })).toEqual([
      "bridge.site_to_site_defaults.max_tunnels: ports listen_port..listen_port+max_tunnels-1 must stay within 65535 (got 10)",
    ]);
  });

  test("a mistyped enabled flag does not switch its section's checks on", () => {
    expect(problems({ api, observe: { enabled: "yes", batch_max_size: 0 } })).toEqual(['observe.enabled: must be true or false (got "yes")']);
  });
});

describe("issue formatting", () => {
  test("key path, message, received JSON, origin", () => {
    expect(formatIssue({ path: "mesh.listen_port", message: "must be 1–65535", received: 70000 })).toBe("mesh.listen_port: must be 1–65535 (got 70000)");
    expect(formatIssue({ path: "mesh.bogus", message: "unknown key" })).toBe("mesh.bogus: unknown key");
    expect(formatIssue({ path: "api", message: "x", received: "y", origin: "env PLEXD_API" })).toBe('api: x (got "y") [from env PLEXD_API]');
  });
  test("odd keys are quoted in key paths", () => {
    expect(problems({ api, mesh: { "": 1, "a.b": 2 } }).sort()).toEqual(['mesh[""]: unknown key', 'mesh["a.b"]: unknown key']);
  });
  test("received values are shortened and never throw", () => {
    const cyclic: unknown[] = [];
    cyclic.push(cyclic);
    expect(showValue(cyclic)).toBe("<unprintable value>");
    expect(showValue("x".repeat(500)).length).toBe(120);
    expect(showValue(10n)).toBe('"10"');
  });
  test("no zod jargon reaches the operator", () => {
    const lines = problems({ api: 1, mesh: [], heartbeat: { interval: null }, observe: { metrics: "all" }, hooks: { definitions: [{}] }, bridge: { access: [7] } });
    expect(lines.length).toBeGreaterThan(5);
    for (const l of lines) expect(l).not.toMatch(/Invalid input|expected \w+, received|Unrecognized|nonoptional/);
    expect(lines).toContain("hooks.definitions[0].name: required");
    expect(lines).toContain("hooks.definitions[0].path: required");
    expect(lines).toContain("bridge.access[0]: must be a mapping of keys (got 7)");
  });
});
