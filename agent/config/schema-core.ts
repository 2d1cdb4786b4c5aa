// Sections of spec/node-agent.md §2.2 that concern the agent's core loops:
// control_plane, token, registration, mesh, reconcile, heartbeat, integrity, policy,
// nat_traversal (bridge spec §1.1), plus the team's `privhelper` extension.
import { hostname } from "node:os";
import * as z from "zod";
import { bool, dur, envNameRe, int, list, oneOf, section, str, withRules } from "./schema-common.js";

export const controlPlaneSchema = withRules(
  section({
    connect_timeout: dur("10s"),
    request_timeout: dur("30s"),
    sse_idle_timeout: dur("90s"),
    ca_file: str().prefault(""),
  }),
  (r) => {
    r.durPositive(["connect_timeout"]);
    const c = r.dur(["connect_timeout"]);
    const q = r.dur(["request_timeout"]);
    if (c !== undefined && q !== undefined && q.ms < c.ms) {
      r.report(["request_timeout"], `must be at least connect_timeout (${c.text})`, q.text);
    }
    r.durAtLeast(["sse_idle_timeout"], "30s");
    r.absPath(["ca_file"], { allowEmpty: true });
  },
).prefault({});

export const tokenSchema = withRules(
  section({
    file: str().prefault("/etc/plexd/bootstrap-token"),
    env: str().prefault("PLEXD_BOOTSTRAP_TOKEN"),
    metadata: bool().prefault(false),
    metadata_path: str().prefault("/plexd/bootstrap-token"),
    metadata_timeout: dur("2s"),
  }),
  (r) => {
    r.absPath(["file"]);
    r.match(["env"], envNameRe, "must be an environment variable name (A-Z, 0-9, _; not starting with a digit)");
    // The metadata source is the only optional one, so its keys are validated only when used.
    if (r.on(["metadata"])) {
      r.match(["metadata_path"], /^\/\S*$/, "must be a metadata key path starting with /");
      r.durPositive(["metadata_timeout"]);
    }
  },
).prefault({});

export const registrationSchema = withRules(
  section({
    // Resolved at parse time so the defaulted object says which name will be registered.
    hostname: str().prefault(() => hostname()),
    metadata: z
      .record(z.string(), str(), { error: "must be a mapping of string keys to string values" })
      .prefault({}),
    max_retry_duration: dur("5m"),
  }),
  (r) => {
    const h = r.str(["hostname"]);
    if (h !== undefined && (h.length < 1 || h.length > 253)) r.report(["hostname"], "must be 1–253 characters", h);
    r.durAtLeast(["max_retry_duration"], "10s");
  },
).prefault({});

export const meshSchema = withRules(
  section({
    interface: str().prefault("plexd0"),
    listen_port: int().prefault(51820),
    mtu: int().prefault(0),
    persistent_keepalive: dur("25s"),
    // Read by privhelper: peers may route prefixes shorter than these (a default route, or
    // 0.0.0.0/1 + 128.0.0.0/1) only with allow_default_route (full tunnel).
    allow_default_route: bool().prefault(false),
    min_route_prefix_v4: int().prefault(8),
    min_route_prefix_v6: int().prefault(16),
    // Read by privhelper: the routing table of a full tunnel's 0.0.0.0/0 and ::/0, and the
    // WireGuard device's fwmark (wg-quick's scheme; 51820 is wg-quick's default too).
    full_tunnel_table: int().prefault(51820),
  }),
  (r) => {
    // The "plexd" prefix is what privhelper's allow-list accepts: plexd can never be pointed
    // at a foreign interface.
    r.match(["interface"], /^plexd[a-z0-9_-]{0,10}$/, 'must be "plexd" followed by up to 10 of a-z, 0-9, _ and - (e.g. plexd0)');
    r.port(["listen_port"]);
    r.intRange(["min_route_prefix_v4"], 1, 32);
    r.intRange(["min_route_prefix_v6"], 1, 128);
    r.intRange(["full_tunnel_table"], 1, 2 ** 31 - 1);
    const t = r.int(["full_tunnel_table"]);
    if (t !== undefined && t >= 253 && t <= 255) r.report(["full_tunnel_table"], "must not be 253–255 (the kernel's default, main and local tables)", t);
    const mtu = r.int(["mtu"]);
    if (mtu !== undefined && mtu !== 0 && (mtu < 1280 || mtu > 9000)) {
      r.report(["mtu"], "must be 0 (kernel default) or 1280–9000", mtu);
    }
    // WireGuard's keepalive is a 16-bit count of whole seconds.
    const k = r.dur(["persistent_keepalive"]);
    if (k !== undefined && k.ms !== 0 && (k.ms % 1000 !== 0 || k.ms < 1000 || k.ms > 65535_000)) {
      r.report(["persistent_keepalive"], "must be 0s (disabled) or whole seconds from 1s to 65535s", k.text);
    }
  },
).prefault({});

export const reconcileSchema = withRules(section({ interval: dur("60s") }), (r) => r.durAtLeast(["interval"], "10s")).prefault({});

export const heartbeatSchema = withRules(section({ interval: dur("30s") }), (r) =>
  r.durBetween(["interval"], "5s", "5m"),
).prefault({});

export const integritySchema = withRules(section({ enabled: bool().prefault(true), verify_interval: dur("5m") }), (r) => {
  if (r.on(["enabled"])) r.durAtLeast(["verify_interval"], "30s");
}).prefault({});

export const policySchema = withRules(
  section({
    enabled: bool().prefault(true),
    default: oneOf(["deny", "allow"]).prefault("deny"),
    log_denied: bool().prefault(true),
    chain_name: str().prefault("plexd-mesh"),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    r.match(["chain_name"], /^[A-Za-z0-9_-]{1,31}$/, "must be 1–31 characters of A-Z, a-z, 0-9, _ and -");
  },
).prefault({});

export const natTraversalSchema = withRules(
  section({
    enabled: bool().prefault(true),
    stun_servers: list(str()).prefault(["stun.l.google.com:19302", "stun.cloudflare.com:3478"]),
    refresh_interval: dur("60s"),
    timeout: dur("5s"),
    fallback: oneOf(["relay", "none"]).prefault("relay"),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    const servers = r.get(["stun_servers"]);
    if (Array.isArray(servers)) {
      if (servers.length === 0) r.report(["stun_servers"], "must list at least one STUN server while nat_traversal is enabled", servers);
      servers.forEach((_, i) => r.hostPort(["stun_servers", i]));
    }
    r.durAtLeast(["refresh_interval"], "10s");
    r.durPositive(["timeout"]);
  },
).prefault({});

// Extension decided by the team (not in the spec tables): the privhelper socket path is
// configurable so that tests can run one privhelper per node (per network namespace) on the
// same machine. Both the agent and privhelper read this key from the same root-owned file.
export const privhelperSchema = withRules(section({ socket: str().prefault("/run/plexd-priv/privhelper.sock") }), (r) =>
  r.absPath(["socket"]),
).prefault({});
