// Sections that open local or remote entry points: access (bridge spec §3.1), actions,
// node_api (spec/node-agent.md §2.2).
import { bool, dur, int, section, str, withRules } from "./schema-common.js";

export const accessSchema = withRules(
  section({
    ssh: section({
      enabled: bool().prefault(true),
      host_key_file: str().prefault("/var/lib/plexd/ssh_host_key"),
      idle_timeout: dur("30m"),
      max_sessions: int().prefault(10),
    }).prefault({}),
    kubernetes: section({
      // Auto-enabled on Kubernetes nodes unless set explicitly: the loader's `sources`
      // map tells whether this value came from the default.
      enabled: bool().prefault(false),
      api_server: str().prefault(""),
      idle_timeout: dur("15m"),
      listen_port: int().prefault(16443),
    }).prefault({}),
  }),
  (r) => {
    if (r.on(["ssh", "enabled"])) {
      r.absPath(["ssh", "host_key_file"]);
      r.durAtLeast(["ssh", "idle_timeout"], "1m");
      r.intAtLeast(["ssh", "max_sessions"], 1);
    }
    if (r.on(["kubernetes", "enabled"])) {
      const api = r.str(["kubernetes", "api_server"]);
      if (api !== undefined && api !== "" && !isHttpsHostPort(api)) {
        r.report(["kubernetes", "api_server"], "must be empty (in-cluster address) or https://host:port", api);
      }
      r.durAtLeast(["kubernetes", "idle_timeout"], "1m");
      r.port(["kubernetes", "listen_port"]);
    }
  },
).prefault({});

function isHttpsHostPort(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === "https:" && u.hostname !== "" && u.username === "" && u.password === "" && (u.pathname === "/" || u.pathname === "") && u.search === "" && u.hash === "";
  } catch {
    return false;
  }
}

export const actionsSchema = withRules(
  section({
    enabled: bool().prefault(true),
    max_concurrent: int().prefault(5),
    default_timeout: dur("30s"),
    max_action_timeout: dur("10m"),
    max_output_bytes: int().prefault(65536),
    drain_timeout: dur("30s"),
    socket: str().prefault("/run/plexd/actions.sock"),
    local_auth: section({ require_root: bool().prefault(true) }).prefault({}),
    // diagnostics.path_test: this node answers peers' tests on its mesh IP, within these caps.
    path_test: section({
      enabled: bool().prefault(true),
      port: int().prefault(51899),
      max_packets_per_second: int().prefault(1000),
      max_bytes_per_second: int().prefault(10 * 1024 * 1024),
      max_duration: dur("60s"),
    }).prefault({}),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    r.intAtLeast(["max_concurrent"], 1);
    r.durAtLeast(["default_timeout"], "1s");
    r.durAtLeast(["max_action_timeout"], "10s");
    const def = r.dur(["default_timeout"]);
    const max = r.dur(["max_action_timeout"]);
    if (def !== undefined && max !== undefined && max.ms < def.ms) {
      r.report(["max_action_timeout"], `must be at least default_timeout (${def.text})`, max.text);
    }
    r.intAtLeast(["max_output_bytes"], 1024);
    r.durAtLeast(["drain_timeout"], "1s");
    r.pathInside(["socket"], "/run/plexd");
    r.intRange(["path_test", "port"], 1024, 65535);
    r.intAtLeast(["path_test", "max_packets_per_second"], 1);
    r.intAtLeast(["path_test", "max_bytes_per_second"], 1500);
    r.durAtLeast(["path_test", "max_duration"], "1s");
  },
).prefault({});

export const nodeApiSchema = withRules(
  section({
    enabled: bool().prefault(true),
    socket: str().prefault("/run/plexd/api.sock"),
    report_debounce: dur("5s"),
    shutdown_timeout: dur("5s"),
    http: section({
      enabled: bool().prefault(false),
      listen: str().prefault("127.0.0.1:9100"),
      token_file: str().prefault("/etc/plexd/node-api-token"),
      secrets_token_file: str().prefault(""),
    }).prefault({}),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    r.pathInside(["socket"], "/run/plexd");
    r.durPositive(["report_debounce"]);
    r.durPositive(["shutdown_timeout"]);
    if (!r.on(["http", "enabled"])) return;
    // Non-loopback listen hosts are allowed (with a startup warning issued by the server).
    r.hostPort(["http", "listen"]);
    const tf = r.str(["http", "token_file"]);
    if (tf === "") r.report(["http", "token_file"], "required when node_api.http.enabled is true", tf);
    else r.absPath(["http", "token_file"]);
    r.absPath(["http", "secrets_token_file"], { allowEmpty: true });
  },
).prefault({});
