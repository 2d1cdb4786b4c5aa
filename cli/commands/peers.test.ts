import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ListPeersResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { peersText } from "./peers.js";

describe("plexd peers", () => {
  it("shows why a peer is quarantined, in a column that appears only when one is", () => {
    const ok = { peerId: "n_a", meshIp: "10.100.0.2", endpoint: "192.0.2.2:51820", visible: true };
    expect(peersText(create(ListPeersResponseSchema, { peers: [ok] }), 0, true)).not.toContain("QUARANTINED");
    const text = peersText(create(ListPeersResponseSchema, { peers: [ok, { peerId: "n_b", meshIp: "10.100.0.3", visible: false, quarantineReason: "endpoint: must be empty or host:port" }] }), 0, true);
    const [head, a, b] = text.split("\n");
    expect(head).toMatch(/VISIBLE\s+QUARANTINED$/);
    expect(a).toMatch(/yes\s+-$/);
    expect(b).toMatch(/^n_b\s.*no\s+endpoint: must be empty or host:port$/);
  });
});
