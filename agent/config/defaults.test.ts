import { hostname } from "node:os";
import { describe, expect, test } from "vitest";
import { type Config, ConfigSchema, parseConfig } from "./schema.js";

// Expected values are copied from the tables of docs/config-reference.md,
// written out literally (ms included) so a wrong parser cannot agree with itself.
const d = (text: string, ms: number) => ({ text, ms });
const api = "https://cp.example.com";
const cfg: Config = parseConfig({ api });

describe("defaults: parsing { api } yields a fully defaulted object", () => {
  test("top level", () => {
    expect(cfg.api).toBe(api);
    expect(cfg.log_level).toBe("info");
    expect(cfg.mode).toBe("node");
    expect(cfg.data_dir).toBe("/var/lib/plexd");
  });

  test("control_plane", () => {
    expect(cfg.control_plane).toEqual({ connect_timeout: d("10s", 10_000), request_timeout: d("30s", 30_000), sse_idle_timeout: d("90s", 90_000), ca_file: "" });
  });

  test("token and registration", () => {
    expect(cfg.token).toEqual({
      file: "/etc/plexd/bootstrap-token",
      env: "PLEXD_BOOTSTRAP_TOKEN",
      metadata: false,
      metadata_path: "/plexd/bootstrap-token",
      metadata_timeout: d("2s", 2000),
    });
    expect(cfg.registration).toEqual({ hostname: hostname(), metadata: {}, max_retry_duration: d("5m", 300_000) });
  });

  test("mesh", () => {
    expect(cfg.mesh).toEqual({ interface: "plexd0", listen_port: 51820, mtu: 0, persistent_keepalive: d("25s", 25_000), allow_default_route: false, min_route_prefix_v4: 8, min_route_prefix_v6: 16, full_tunnel_table: 51820 });
  });

  test("reconcile, heartbeat, integrity", () => {
    expect(cfg.reconcile).toEqual({ interval: d("60s", 60_000) });
    expect(cfg.heartbeat).toEqual({ interval: d("30s", 30_000) });
    expect(cfg.integrity).toEqual({ enabled: true, verify_interval: d("5m", 300_000) });
  });

  test("policy", () => {
    expect(cfg.policy).toEqual({ enabled: true, default: "deny", log_denied: true, chain_name: "plexd-mesh" });
  });

  test("nat_traversal", () => {
    expect(cfg.nat_traversal).toEqual({
      enabled: true,
      stun_servers: ["stun.l.google.com:19302", "stun.cloudflare.com:3478"],
      refresh_interval: d("60s", 60_000),
      timeout: d("5s", 5000),
      fallback: "relay",
    });
  });

  test("observe, logs, audit", () => {
    expect(cfg.observe).toEqual({
      enabled: true,
      interval: d("15s", 15_000),
      batch_interval: d("10s", 10_000),
      batch_max_size: 500,
      buffer_size: 5000,
      metrics: ["node_resources", "tunnel_health", "peer_latency", "agent_stats"],
    });
    expect(cfg.logs).toEqual({
      enabled: true,
      sources: ["journald"],
      filters: [],
      batch_interval: d("10s", 10_000),
      batch_max_size: 1000,
      buffer_size: 10_000,
      max_line_size: 16_384,
      tail_files: [],
    });
    expect(cfg.audit).toEqual({
      enabled: true,
      sources: ["auditd"],
      kubernetes_log_path: "/var/log/kubernetes/audit/audit.log",
      batch_interval: d("10s", 10_000),
      batch_max_size: 500,
      buffer_size: 10_000,
    });
  });

  test("access", () => {
    expect(cfg.access).toEqual({
      ssh: { enabled: true, host_key_file: "/var/lib/plexd/ssh_host_key", idle_timeout: d("30m", 1_800_000), max_sessions: 10 },
      kubernetes: { enabled: false, api_server: "", idle_timeout: d("15m", 900_000), listen_port: 16443 },
    });
  });

  test("actions", () => {
    expect(cfg.actions).toEqual({
      enabled: true,
      max_concurrent: 5,
      default_timeout: d("30s", 30_000),
      max_action_timeout: d("10m", 600_000),
      max_output_bytes: 65_536,
      drain_timeout: d("30s", 30_000),
      socket: "/run/plexd/actions.sock",
      local_auth: { require_root: true },
      path_test: { enabled: true, port: 51899, max_packets_per_second: 1000, max_bytes_per_second: 10_485_760, max_duration: d("60s", 60_000) },
      upgrade_root: "/",
    });
  });

  test("hooks", () => {
    expect(cfg.hooks).toEqual({ enabled: true, dir: "/etc/plexd/hooks.d", definitions: [], trusted_keys: [], require_signature: false });
  });

  test("node_api", () => {
    expect(cfg.node_api).toEqual({
      enabled: true,
      socket: "/run/plexd/api.sock",
      report_debounce: d("5s", 5000),
      shutdown_timeout: d("5s", 5000),
      http: { enabled: false, listen: "127.0.0.1:9100", token_file: "/etc/plexd/node-api-token", secrets_token_file: "" },
    });
  });

  test("bridge", () => {
    expect(cfg.bridge).toEqual({
      access_interface: "",
      access_subnets: [],
      enable_nat: true,
      access: [],
      ingress: { enabled: false, listen: "0.0.0.0:443", max_rules: 20, dial_timeout: d("10s", 10_000), max_connections_per_rule: 1000 },
      relay: { enabled: true, listen_port: 51821, max_sessions: 100, session_ttl: d("5m", 300_000) },
      site_to_site: [],
      site_to_site_defaults: { interface_prefix: "wg-s2s-", listen_port: 51823, max_tunnels: 10 },
    });
  });

  test("privhelper (team extension)", () => {
    expect(cfg.privhelper).toEqual({ socket: "/run/plexd-priv/privhelper.sock" });
  });

  test("no section is missing from the defaulted object", () => {
    expect(Object.keys(cfg).sort()).toEqual(
      [
        "api", "log_level", "mode", "data_dir", "control_plane", "token", "registration", "mesh", "reconcile", "heartbeat",
        "integrity", "policy", "nat_traversal", "observe", "logs", "audit", "access", "actions", "hooks", "node_api", "bridge", "privhelper",
      ].sort(),
    );
  });

  test("list items get their defaults too", () => {
    const c = parseConfig({
      api,
      mode: "bridge",
      bridge: { access: [{ type: "wireguard" }, { type: "tailscale" }, { type: "netbird" }] },
      hooks: { definitions: [{ name: "h", path: "/etc/plexd/hooks.d/h", parameters: [{ name: "p", type: "string" }] }] },
    });
    expect(c.bridge.access).toEqual([
      { type: "wireguard", listen_port: 51822, interface_name: "wg-access", max_peers: 50 },
      { type: "tailscale", auth_key_env: "TS_AUTHKEY" },
      { type: "netbird", setup_key_env: "NB_SETUP_KEY" },
    ]);
    expect(c.hooks.definitions[0]).toEqual({
      name: "h",
      path: "/etc/plexd/hooks.d/h",
      description: "",
      parameters: [{ name: "p", type: "string", required: false, default: null, description: "" }],
      // A hook's timeout defaults to actions.default_timeout.
      timeout: d("30s", 30_000),
      user: "nobody",
      sandbox: "namespaced",
      resources: { cpu: null, memory: null },
      sandbox_options: { writable_paths: ["/tmp"], mount_proc: true, allowed_devices: [], image: "", network: "none", capabilities: [] },
    });
  });

  test("the parsed object is deeply frozen", () => {
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.mesh)).toBe(true);
    expect(Object.isFrozen(cfg.nat_traversal.stun_servers)).toBe(true);
    expect(Object.isFrozen(cfg.heartbeat.interval)).toBe(true);
    expect(() => {
      (cfg.mesh as { listen_port: number }).listen_port = 1;
    }).toThrow(TypeError);
  });

  test("ConfigSchema itself is usable directly", () => {
    const r = ConfigSchema.safeParse({ api });
    expect(r.success).toBe(true);
    expect(ConfigSchema.safeParse({}).success).toBe(false);
  });
});
