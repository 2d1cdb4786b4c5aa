// A bridge's user-access clients as the other nodes see them, and one client upserted or removed.
import { describe, expect, it } from "vitest";
import { userAccessAddresses, withUserAccessPeer } from "./user-access.js";

describe("userAccessAddresses", () => {
  it("the clients' addresses, canonical and sorted; no default route; none when disabled", () => {
    const block = { enabled: true, peers: [{ public_key: "k1", allowed_ips: ["10.100.250.3", "10.100.250.2/32"] }, { public_key: "k2", allowed_ips: ["0.0.0.0/0", "bad", 7] }, "junk"] };
    expect(userAccessAddresses(block)).toEqual(["10.100.250.2/32", "10.100.250.3/32"]);
    expect(userAccessAddresses({ ...block, enabled: false })).toEqual([]);
    expect(userAccessAddresses(undefined)).toEqual([]);
  });
});

describe("withUserAccessPeer", () => {
  it("upserts by public_key and removes; a block not yet set starts enabled", () => {
    const one = withUserAccessPeer(undefined, "k1", { public_key: "k1", allowed_ips: ["10.100.250.2/32"] });
    expect(one).toEqual({ enabled: true, peers: [{ public_key: "k1", allowed_ips: ["10.100.250.2/32"] }] });
    const replaced = withUserAccessPeer(one, "k1", { public_key: "k1", allowed_ips: ["10.100.250.9/32"] });
    expect(replaced.peers).toEqual([{ public_key: "k1", allowed_ips: ["10.100.250.9/32"] }]);
    expect(withUserAccessPeer({ enabled: false, peers: replaced.peers }, "k1", undefined)).toEqual({ enabled: false, peers: [] });
  });
});
