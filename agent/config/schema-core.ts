// Sections of docs/config-reference.md that concern the agent's core loops:
// control_plane, token, registration, mesh, reconcile, heartbeat, integrity, policy,
// nat_traversal (docs/architecture.md#the-control-plane-channel), plus the team's `privhelper` extension.
import { hostname } from "node:os";
import * as z from "zod";
import { bool, dur, envNameRe, int, list, oneOf, section, str, withRules } from "./schema-common.js";

export const controlPlaneSchema = withRules(
  section({
    connect_timeout: dur("10s").meta({ description: "Time allowed to open a TCP+TLS connection to the control plane.", allowed: "> 0" }),
    request_timeout: dur("30s").meta({ description: "Time allowed for one control-plane request, connection included.", allowed: "≥ `control_plane.connect_timeout`" }),
    sse_idle_timeout: dur("90s").meta({ description: "The event stream is reconnected when no byte (keep-alive comments included) arrived for this long.", allowed: "≥ 30s" }),
    ca_file: str().prefault("").meta({ description: "PEM bundle added to the system's roots for the control plane's certificate. Certificate validation cannot be turned off.", allowed: "empty, or an absolute path" }),
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
).prefault({}).meta({ description: "HTTP client of the control plane (`api`)." });

export const tokenSchema = withRules(
  section({
    file: str().prefault("/etc/plexd/bootstrap-token").meta({ description: "File holding the one-time bootstrap token used at registration; deleted after a successful registration.", allowed: "absolute path" }),
    env: str().prefault("PLEXD_BOOTSTRAP_TOKEN").meta({ description: "Name of the environment variable that may hold the bootstrap token.", allowed: "environment variable name: `^[A-Z_][A-Z0-9_]*$`" }),
    metadata: bool().prefault(false).meta({ description: "Also ask the cloud instance metadata service for the bootstrap token (last source tried)." }),
    metadata_path: str().prefault("/plexd/bootstrap-token").meta({ description: "Key path of the token in the metadata service.", allowed: "starts with `/` (checked when `token.metadata` is true)" }),
    metadata_timeout: dur("2s").meta({ description: "Time allowed for the metadata service to answer.", allowed: "> 0 (checked when `token.metadata` is true)" }),
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
).prefault({}).meta({ description: "Where the one-time bootstrap token is looked for at registration, in this order after `--token-file`: `token.file`, the variable named by `token.env`, the metadata service (when `token.metadata`), an interactive prompt." });

export const registrationSchema = withRules(
  section({
    // Resolved at parse time so the defaulted object says which name will be registered.
    hostname: str().prefault(() => hostname()).meta({ description: "Name this node registers with.", allowed: "1–253 characters", default_doc: "the OS hostname" }),
    metadata: z
      .record(z.string(), str(), { error: "must be a mapping of string keys to string values" })
      .prefault({}).meta({ description: "Labels sent at registration, merged over the automatic `os`, `arch` and `kernel` entries.", allowed: "mapping of string to string" }),
    max_retry_duration: dur("5m").meta({ description: "How long registration retries (with backoff) before the agent gives up and exits.", allowed: "≥ 10s" }),
  }),
  (r) => {
    const h = r.str(["hostname"]);
    if (h !== undefined && (h.length < 1 || h.length > 253)) r.report(["hostname"], "must be 1–253 characters", h);
    r.durAtLeast(["max_retry_duration"], "10s");
  },
).prefault({}).meta({ description: "What the node registers with." });

export const meshSchema = withRules(
  section({
    interface: str().prefault("plexd0").meta({ description: "Name of the WireGuard interface. The `plexd` prefix is what privhelper accepts, so plexd can never be pointed at a foreign interface.", allowed: "`plexd` followed by up to 10 of a-z, 0-9, `_`, `-`" }),
    listen_port: int().prefault(51820).meta({ description: "UDP port of the WireGuard interface.", allowed: "1–65535" }),
    mtu: int().prefault(0).meta({ description: "MTU of the WireGuard interface; 0 leaves the kernel's default.", allowed: "0, or 1280–9000" }),
    persistent_keepalive: dur("25s").meta({ description: "WireGuard persistent keepalive sent to every peer (keeps NAT mappings open); 0s disables it.", allowed: "0s, or whole seconds 1s–65535s" }),
    // Read by privhelper: peers may route prefixes shorter than these (a default route, or
    // 0.0.0.0/1 + 128.0.0.0/1) only with allow_default_route (full tunnel).
    allow_default_route: bool().prefault(false).meta({ description: "Allow peers to route a default route or any prefix shorter than the minimums below (full tunnel through an exit peer). Read by privhelper too. See docs/operations.md, \"Full tunnel\"." }),
    min_route_prefix_v4: int().prefault(8).meta({ description: "Shortest IPv4 prefix a peer may route without `mesh.allow_default_route`; a peer with a shorter one is quarantined.", allowed: "1–32" }),
    min_route_prefix_v6: int().prefault(16).meta({ description: "Shortest IPv6 prefix a peer may route without `mesh.allow_default_route`.", allowed: "1–128" }),
    // Read by privhelper: the routing table of a full tunnel's 0.0.0.0/0 and ::/0, and the
    // WireGuard device's fwmark (wg-quick's scheme; 51820 is wg-quick's default too).
    full_tunnel_table: int().prefault(51820).meta({ description: "Routing table of a full tunnel's default routes, and the WireGuard device's fwmark (wg-quick's scheme). Read by privhelper too.", allowed: "1–2147483647, not 253–255" }),
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
).prefault({}).meta({ description: "The WireGuard interface of the mesh." });

export const reconcileSchema = withRules(
  section({
    interval: dur("60s").meta({ description: "Interval of the full state pull from the control plane and of the drift check against the kernel.", allowed: "≥ 10s" }),
  }),
  (r) => r.durAtLeast(["interval"], "10s"),
).prefault({}).meta({ description: "The periodic state pull and drift repair." });

export const heartbeatSchema = withRules(
  section({
    interval: dur("30s").meta({ description: "Interval of the heartbeat to the control plane.", allowed: "5s–5m" }),
  }),
  (r) => r.durBetween(["interval"], "5s", "5m"),
).prefault({}).meta({ description: "Liveness reports to the control plane." });

export const integritySchema = withRules(
  section({
    enabled: bool().prefault(true).meta({ description: "Verify the agent's binary and declared hooks against their recorded checksums." }),
    verify_interval: dur("5m").meta({ description: "Interval of the integrity checks.", allowed: "≥ 30s (when enabled)" }),
  }),
  (r) => {
    if (r.on(["enabled"])) r.durAtLeast(["verify_interval"], "30s");
  },
).prefault({}).meta({ description: "Checksum verification of the agent and its hooks. This version of the agent validates the section but does not act on it yet." });

export const policySchema = withRules(
  section({
    enabled: bool().prefault(true).meta({ description: "`false`: no firewall rules; every peer the control plane sends is configured and reachable." }),
    default: oneOf(["deny", "allow"]).prefault("deny").meta({ description: "What the mesh firewall does with traffic no policy rule allows." }),
    log_denied: bool().prefault(true).meta({ description: "Log dropped mesh packets (rate-limited) in the kernel log." }),
    chain_name: str().prefault("plexd-mesh").meta({ description: "Name of the nftables chain holding the mesh policy (in table `inet plexd`).", allowed: "1–31 of A-Z, a-z, 0-9, `_`, `-` (when enabled)" }),
  }),
  (r) => {
    if (!r.on(["enabled"])) return;
    r.match(["chain_name"], /^[A-Za-z0-9_-]{1,31}$/, "must be 1–31 characters of A-Z, a-z, 0-9, _ and -");
  },
).prefault({}).meta({ description: "The mesh firewall (nftables table `inet plexd`)." });

export const natTraversalSchema = withRules(
  section({
    enabled: bool().prefault(true).meta({ description: "Discover this node's public endpoint with STUN and report it to the control plane." }),
    stun_servers: list(str()).prefault(["stun.l.google.com:19302", "stun.cloudflare.com:3478"]).meta({ description: "STUN servers asked, in order.", allowed: "non-empty list of `host:port` (when enabled)" }),
    refresh_interval: dur("60s").meta({ description: "Interval of endpoint rediscovery.", allowed: "≥ 10s (when enabled)" }),
    timeout: dur("5s").meta({ description: "Time allowed per STUN server.", allowed: "> 0 (when enabled)" }),
    fallback: oneOf(["relay", "none"]).prefault("relay").meta({ description: "Sent with the endpoint report: `relay` asks the control plane to relay this node's traffic through a bridge when no direct path is possible (symmetric NATs, or no handshake follows; docs/bridge.md#relay); `none` does not." }),
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
).prefault({}).meta({ description: "Public endpoint discovery (STUN) for peers behind NAT." });

// The privhelper socket path is
// configurable so that tests can run one privhelper per node (per network namespace) on the
// same machine. Both the agent and privhelper read this key from the same root-owned file.
export const privhelperSchema = withRules(
  section({
    socket: str().prefault("/run/plexd-priv/privhelper.sock").meta({ description: "Unix socket of privhelper. Read by the agent and by privhelper from the same file.", allowed: "absolute path" }),
  }),
  (r) => r.absPath(["socket"]),
).prefault({}).meta({ description: "Where the agent finds privhelper." });
