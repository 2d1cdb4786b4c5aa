import { describe, expect, it } from "vitest";
import { bridgeForDisk, foldBridgeBlocks, foldBridgeEvent } from "./desired.js";
import type { BridgeDesired } from "./service.js";

describe("bridge desired state", () => {
  it("assign upserts by id, the same content is no change, revoke removes by id", () => {
    const d: BridgeDesired = {};
    const t = { tunnel_id: "t1", remote_endpoint: "198.51.100.7:51823", remote_subnets: ["10.2.0.0/24"] };
    expect(foldBridgeEvent(d, "site_to_site_tunnel_assigned", t)).toBe("changed");
    expect(foldBridgeEvent(d, "site_to_site_tunnel_assigned", { ...t })).toBe("unchanged");
    expect(foldBridgeEvent(d, "site_to_site_tunnel_assigned", { ...t, remote_subnets: ["10.3.0.0/24"] })).toBe("changed");
    expect(d.site_to_site_config).toEqual({ tunnels: [{ ...t, remote_subnets: ["10.3.0.0/24"] }] });
    expect(foldBridgeEvent(d, "site_to_site_tunnel_revoked", { tunnel_id: "nope" })).toBe("unchanged");
    expect(foldBridgeEvent(d, "site_to_site_tunnel_revoked", { tunnel_id: "t1" })).toBe("changed");
    expect(d.site_to_site_config).toEqual({ tunnels: [] });
  });

  it("keys each feature by its own id; config_updated only asks for a reconcile; bad payloads change nothing", () => {
    const d: BridgeDesired = { user_access_config: { enabled: true, peers: [{ public_key: "k1" }] } };
    expect(foldBridgeEvent(d, "user_access_peer_assigned", { public_key: "k2", allowed_ips: ["100.64.0.2/32"] })).toBe("changed");
    expect(d.user_access_config).toEqual({ enabled: true, peers: [{ public_key: "k1" }, { public_key: "k2", allowed_ips: ["100.64.0.2/32"] }] });
    expect(foldBridgeEvent(d, "relay_session_assigned", { session_id: 7 })).toBe("invalid_payload");
    expect(foldBridgeEvent(d, "bridge_config_updated", {})).toBe("reconcile");
    expect(foldBridgeEvent(d, "peer_added", {})).toBe("not_bridge");
    expect(Object.keys(d)).toEqual(["user_access_config"]);
  });

  it("a state document replaces the blocks it carries and leaves absent ones alone", () => {
    const d: BridgeDesired = { relay_config: { sessions: [{ session_id: "s" }] } };
    expect(foldBridgeBlocks(d, { bridge_config: { access_subnets: ["192.168.50.0/24"], enable_nat: true } })).toBe(true);
    expect(foldBridgeBlocks(d, { bridge_config: { access_subnets: ["192.168.50.0/24"], enable_nat: true } })).toBe(false);
    expect(d).toEqual({ relay_config: { sessions: [{ session_id: "s" }] }, bridge_config: { access_subnets: ["192.168.50.0/24"], enable_nat: true } });
  });

  it("the cache never holds an ingress TLS key; memory keeps it", () => {
    const rule = { rule_id: "r1", mode: "terminate", cert_pem: "CERT", key_pem: "-----BEGIN PRIVATE KEY-----" };
    const d: BridgeDesired = { ingress_config: { rules: [rule] }, bridge_config: { access_subnets: [] } };
    const disk = JSON.stringify(bridgeForDisk(d));
    expect(disk).not.toContain("PRIVATE KEY");
    expect(JSON.parse(disk)).toEqual({ ingress_config: { rules: [{ rule_id: "r1", mode: "terminate", cert_pem: "CERT" }] }, bridge_config: { access_subnets: [] } });
    expect((d.ingress_config!.rules as (typeof rule)[])[0]!.key_pem).toContain("PRIVATE KEY");
  });
});
