import { describe, expect, it } from "vitest";
import { meshSpecFor } from "./spec.js";

const key = (n: number): string => Buffer.alloc(32, n).toString("base64");
const peer = (id: string, n: number, extra: Partial<{ endpoint: string; allowed_ips: string[] }> = {}) => ({
  id,
  public_key: key(n),
  mesh_ip: `10.100.1.${n}`,
  endpoint: extra.endpoint ?? "",
  allowed_ips: extra.allowed_ips ?? [],
  psk: key(100 + n),
});

describe("meshSpecFor", () => {
  const base = { interface: "plexd0", listenPort: 51820, mtu: 0, keepaliveSeconds: 25, privateKey: key(9), meshIp: "10.100.1.9" };

  it("renders every visible peer with PSK, endpoint, allowed IPs and keepalive", () => {
    const spec = meshSpecFor({ ...base, peers: [peer("n_b", 2, { endpoint: "192.0.2.2:51820", allowed_ips: ["10.100.1.2/32", "10.100.9.0/24"] }), peer("n_a", 1)] });
    expect(spec.addresses).toEqual(["10.100.1.9/32"]);
    expect(spec.peers.map(({ $typeName: _t, ...p }) => p)).toEqual([
      { publicKey: key(1), presharedKey: key(101), endpoint: "", allowedIps: ["10.100.1.1/32"], persistentKeepalive: 25 },
      { publicKey: key(2), presharedKey: key(102), endpoint: "192.0.2.2:51820", allowedIps: ["10.100.1.2/32", "10.100.9.0/24"], persistentKeepalive: 25 },
    ]);
  });

  it("leaves out peers that policy hides", () => {
    const spec = meshSpecFor({ ...base, peers: [peer("n_a", 1), peer("n_b", 2)], visible: (id) => id === "n_b" });
    expect(spec.peers?.map((p) => p.publicKey)).toEqual([key(2)]);
  });

  it("is independent of input order", () => {
    const a = meshSpecFor({ ...base, peers: [peer("n_a", 1), peer("n_b", 2)] });
    const b = meshSpecFor({ ...base, peers: [peer("n_b", 2), peer("n_a", 1)] });
    expect(a).toEqual(b);
  });
});
