// `bridge` section (docs/config-reference.md). It is read only
// in `mode: bridge`, so all of its rules run only then (see schema.ts); the cross-section port
// checks against `mesh.listen_port` live in schema.ts as well.
import * as z from "zod";
import { type Rules, bool, dur, envNameRe, ifaceNameRe, int, isRec, list, oneOf, section, str } from "./schema-common.js";

export const accessProviderTypes = ["wireguard", "tailscale", "netbird"] as const;

const accessProvider = z.discriminatedUnion(
  "type",
  [
    section({
      type: z.literal("wireguard"),
      listen_port: int().prefault(51822).meta({ description: "UDP port of the user-access WireGuard interface.", allowed: "1–65535, distinct from the mesh and relay ports" }),
      interface_name: str().prefault("wg-access").meta({ description: "Name of the user-access WireGuard interface.", allowed: "1–15 of A-Z, a-z, 0-9, `_`, `-`" }),
      max_peers: int().prefault(50).meta({ description: "Most user-access peers.", allowed: "≥ 1" }),
    }),
    section({
      type: z.literal("tailscale"),
      auth_key_env: str().prefault("TS_AUTHKEY").meta({ description: "Environment variable holding the Tailscale auth key.", allowed: "environment variable name" }),
    }),
    section({
      type: z.literal("netbird"),
      setup_key_env: str().prefault("NB_SETUP_KEY").meta({ description: "Environment variable holding the NetBird setup key.", allowed: "environment variable name" }),
    }),
  ],
  // zod already reports a bad discriminator on the `type` key; config-error.ts shows its value.
  // zod types this callback as invalid_union only, but a non-object item arrives as invalid_type.
  { error: (iss) => ((iss as { code: string }).code === "invalid_type" ? "must be a mapping of keys" : `must be one of: ${accessProviderTypes.join(", ")}`) },
);

const siteToSite = section({
  name: str().meta({ description: "Name of the tunnel.", allowed: "non-empty, unique" }),
  // ipsec and openvpn are well-typed but rejected as unsupported by the bridge rules.
  type: oneOf(["wireguard", "ipsec", "openvpn"]).meta({ description: "Tunnel type; only `wireguard` is implemented (`ipsec` and `openvpn` are refused as unsupported)." }),
  remote_endpoint: str().meta({ description: "Remote end of the tunnel.", allowed: "`host:port`" }),
  remote_subnets: list(str()).prefault([]).meta({ description: "Subnets routed through the tunnel.", allowed: "CIDRs" }),
});

export const bridgeSchema = section({
  access_interface: str().prefault("").meta({ description: "Interface of the local network the bridge gives access to.", allowed: "interface name; required when `bridge.access_subnets` is not empty" }),
  access_subnets: list(str()).prefault([]).meta({ description: "Local subnets announced to the mesh through this bridge.", allowed: "CIDRs" }),
  enable_nat: bool().prefault(true).meta({ description: "Masquerade mesh traffic leaving through `bridge.access_interface`." }),
  access: list(accessProvider).prefault([]).meta({ description: "User-access providers, at most one per `type`: `wireguard`, `tailscale`, `netbird`." }),
  ingress: section({
    enabled: bool().prefault(false).meta({ description: "Open the ingress listener." }),
    listen: str().prefault("0.0.0.0:443").meta({ description: "Address of the ingress listener.", allowed: "`host:port` (when enabled)" }),
    max_rules: int().prefault(20).meta({ description: "Most ingress rules.", allowed: "≥ 1 (when enabled)" }),
    dial_timeout: dur("10s").meta({ description: "Time allowed to reach an ingress target.", allowed: "≥ 1s (when enabled)" }),
    max_connections_per_rule: int().prefault(1000).meta({ description: "Most open connections per ingress rule.", allowed: "≥ 1 (when enabled)" }),
  }).prefault({}).meta({ description: "SNI-routed TCP/TLS ingress; certificates come from the control plane." }),
  relay: section({
    enabled: bool().prefault(true).meta({ description: "Run the relay." }),
    listen_port: int().prefault(51821).meta({ description: "UDP port of the relay; the WireGuard device owns the mesh port, so it must differ.", allowed: "1–65535, ≠ `mesh.listen_port` (when enabled)" }),
    max_sessions: int().prefault(100).meta({ description: "Most relayed peer pairs.", allowed: "≥ 1 (when enabled)" }),
    session_ttl: dur("5m").meta({ description: "A relay session without traffic for this long is dropped.", allowed: "≥ 30s (when enabled)" }),
  }).prefault({}).meta({ description: "UDP relay for peers that cannot reach each other directly (symmetric NAT)." }),
  site_to_site: list(siteToSite).prefault([]).meta({ description: "Pinned site-to-site tunnels." }),
  site_to_site_defaults: section({
    interface_prefix: str().prefault("wg-s2s-").meta({ description: "Prefix of tunnel interface names (8 hex digits are appended).", allowed: "1–7 of A-Z, a-z, 0-9, `_`, `-`" }),
    listen_port: int().prefault(51823).meta({ description: "First UDP port of site-to-site tunnels (one port per tunnel).", allowed: "1–65535; the range must not overlap other ports" }),
    max_tunnels: int().prefault(10).meta({ description: "Most site-to-site tunnels.", allowed: "≥ 1; `listen_port + max_tunnels - 1` ≤ 65535" }),
  }).prefault({}).meta({ description: "Defaults of site-to-site tunnels." }),
}).prefault({}).meta({ description: "Bridge functions; read only with `mode: bridge`. docs/bridge.md says which services this version runs; the others are validated and not started." });

export type AccessProvider = z.output<typeof accessProvider>;
export type SiteToSiteEntry = z.output<typeof siteToSite>;

/** Bridge rules; `r` is rooted at the whole config so mesh ports are reachable. */
export function bridgeRules(r: Rules): void {
  const b = (...p: (string | number)[]) => ["bridge", ...p];
  const subnets = r.get(b("access_subnets"));
  r.cidrs(b("access_subnets"));
  const accessIf = r.str(b("access_interface"));
  if (Array.isArray(subnets) && subnets.length > 0 && accessIf === "") {
    r.report(b("access_interface"), "required when bridge.access_subnets is not empty", accessIf);
  } else if (accessIf !== undefined && accessIf !== "") {
    r.match(b("access_interface"), ifaceNameRe, "must be an interface name (1–15 of A-Z, a-z, 0-9, _ and -)");
  }

  const meshPort = r.int(["mesh", "listen_port"]);
  const relayOn = r.on(b("relay", "enabled"));
  const relayPort = relayOn ? r.int(b("relay", "listen_port")) : undefined;
  const used: { port: number; what: string }[] = [];
  if (meshPort !== undefined) used.push({ port: meshPort, what: "mesh.listen_port" });

  if (relayOn) {
    r.port(b("relay", "listen_port"));
    // The WireGuard device owns the mesh UDP socket, so the relay cannot share it.
    if (relayPort !== undefined && relayPort === meshPort) {
      r.report(b("relay", "listen_port"), `must differ from mesh.listen_port (${meshPort})`, relayPort);
    }
    if (relayPort !== undefined) used.push({ port: relayPort, what: "bridge.relay.listen_port" });
    r.intAtLeast(b("relay", "max_sessions"), 1);
    r.durAtLeast(b("relay", "session_ttl"), "30s");
  }

  if (r.on(b("ingress", "enabled"))) {
    r.hostPort(b("ingress", "listen"));
    r.intAtLeast(b("ingress", "max_rules"), 1);
    r.durAtLeast(b("ingress", "dial_timeout"), "1s");
    r.intAtLeast(b("ingress", "max_connections_per_rule"), 1);
  }

  const access = r.get(b("access"));
  if (Array.isArray(access)) {
    const seen = new Map<string, number>();
    access.forEach((a, i) => {
      if (!isRec(a) || typeof a.type !== "string") return;
      const first = seen.get(a.type);
      if (first !== undefined) r.report(b("access", i, "type"), `only one provider of each type allowed (also bridge.access[${first}])`, a.type);
      else seen.set(a.type, i);
      if (a.type === "wireguard") {
        r.port(b("access", i, "listen_port"));
        const port = r.int(b("access", i, "listen_port"));
        const clash = used.find((u) => u.port === port);
        if (port !== undefined && clash !== undefined) r.report(b("access", i, "listen_port"), `must differ from ${clash.what} (${port})`, port);
        if (port !== undefined) used.push({ port, what: `bridge.access[${i}].listen_port` });
        r.match(b("access", i, "interface_name"), ifaceNameRe, "must be an interface name (1–15 of A-Z, a-z, 0-9, _ and -)");
        r.intAtLeast(b("access", i, "max_peers"), 1);
      }
      if (a.type === "tailscale") r.match(b("access", i, "auth_key_env"), envNameRe, "must be an environment variable name");
      if (a.type === "netbird") r.match(b("access", i, "setup_key_env"), envNameRe, "must be an environment variable name");
    });
  }

  const s2s = r.get(b("site_to_site"));
  if (Array.isArray(s2s)) {
    const names = new Map<string, number>();
    s2s.forEach((e, i) => {
      if (!isRec(e)) return;
      if (e.type === "ipsec" || e.type === "openvpn") {
        r.report(b("site_to_site", i, "type"), `unsupported: only wireguard site-to-site tunnels are implemented`, e.type);
      }
      if (typeof e.name === "string") {
        if (e.name === "") r.report(b("site_to_site", i, "name"), "must not be empty", e.name);
        const first = names.get(e.name);
        if (first !== undefined) r.report(b("site_to_site", i, "name"), `duplicate name (also bridge.site_to_site[${first}])`, e.name);
        else names.set(e.name, i);
      }
      r.hostPort(b("site_to_site", i, "remote_endpoint"));
      r.cidrs(b("site_to_site", i, "remote_subnets"));
    });
  }

  // Interface names are prefix + 8 hex digits and must fit the kernel's 15-character limit.
  r.match(b("site_to_site_defaults", "interface_prefix"), /^[A-Za-z0-9_-]{1,7}$/, "must be 1–7 characters of A-Z, a-z, 0-9, _ and - (8 hex digits are appended)");
  r.intAtLeast(b("site_to_site_defaults", "max_tunnels"), 1);
  r.port(b("site_to_site_defaults", "listen_port"));
  const base = r.int(b("site_to_site_defaults", "listen_port"));
  const count = r.int(b("site_to_site_defaults", "max_tunnels"));
  if (base !== undefined && count !== undefined && count >= 1 && base >= 1 && base <= 65535) {
    if (base + count - 1 > 65535) {
      r.report(b("site_to_site_defaults", "max_tunnels"), `ports listen_port..listen_port+max_tunnels-1 must stay within 65535`, count);
    } else {
      const clash = used.find((u) => u.port >= base && u.port < base + count);
      if (clash !== undefined) {
        r.report(b("site_to_site_defaults", "listen_port"), `port range ${base}–${base + count - 1} overlaps ${clash.what} (${clash.port})`, base);
      }
    }
  }
}
