import { describe, expect, it } from "vitest";
import { emptyDesiredState } from "../state/desired.js";
import { applyStateDocument, stateDocument } from "./state-pull.js";

const key = (n: number) => Buffer.alloc(32, n).toString("base64");
const peer = (i: number, over: object = {}) => ({ id: `n_${i}`, public_key: key(i), mesh_ip: `10.100.0.${i}`, endpoint: "", allowed_ips: [`10.100.0.${i}/32`], psk: key(100 + i), ...over });

describe("state document peers", () => {
  it("keeps a bad peer for admission to quarantine instead of refusing the whole document", () => {
    const doc = stateDocument.parse({ peers: [peer(1), peer(2, { public_key: 7, allowed_ips: "x" }), { public_key: key(3) }, peer(4, { endpoint: "bad\n" })] });
    expect(doc.peers.map((p) => p.id)).toEqual(["n_1", "n_2", "n_4"]);
    expect(doc.peers[1]!.malformed).toBe("public_key: must be a string; allowed_ips: must be a list of strings");
    expect(doc.peers[2]!.malformed).toBeUndefined();
  });

  it("keeps known peers in their order of arrival; new ones follow", () => {
    const s = emptyDesiredState();
    applyStateDocument(s, stateDocument.parse({ peers: [peer(1), peer(2)] }));
    const changed = applyStateDocument(s, stateDocument.parse({ peers: [peer(3), peer(2), peer(1, { endpoint: "192.0.2.1:1" })] }));
    expect(Object.keys(s.peers)).toEqual(["n_1", "n_2", "n_3"]);
    expect(changed).toEqual([{ peers: ["n_1", "n_3"] }]);
  });
});
