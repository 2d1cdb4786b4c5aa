// Bridge device traffic for GetBridgeStatus, with ReadMesh faked: sums over peers, the latest
// handshake, and devices that cannot be read left out.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ReadMeshResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { bridgeDeviceTraffic } from "./bridge-devices-view.js";

describe("bridgeDeviceTraffic", () => {
  it("sums bytes over peers, keeps the latest handshake, leaves out what it cannot read", async () => {
    const asked: string[] = [];
    const priv = {
      readMesh: (req: { interface?: string }) => {
        const name = req.interface ?? "";
        asked.push(name);
        if (name === "wg-s2s-gone") return Promise.resolve(create(ReadMeshResponseSchema, { exists: false }));
        if (name === "wg-s2s-err") return Promise.reject(new PlexdError("unavailable", "privhelper down"));
        if (name === "wg-s2s-new") return Promise.resolve(create(ReadMeshResponseSchema, { exists: true, peers: [{ publicKey: "k" }] }));
        return Promise.resolve(
          create(ReadMeshResponseSchema, {
            exists: true,
            peers: [
              { publicKey: "a", rxBytes: 100n, txBytes: 5n, lastHandshake: timestampFromMs(1_000_000) },
              { publicKey: "b", rxBytes: 20n, txBytes: 7n, lastHandshake: timestampFromMs(2_000_000) },
              { publicKey: "c" },
            ],
          }),
        );
      },
    };
    const got = await bridgeDeviceTraffic(priv as never, ["wg-access", "wg-s2s-gone", "wg-s2s-err", "wg-s2s-new"], 1000);
    expect(asked.sort()).toEqual(["wg-access", "wg-s2s-err", "wg-s2s-gone", "wg-s2s-new"]);
    expect(got.get("wg-access")).toEqual({ rxBytes: 120n, txBytes: 12n, lastHandshake: timestampFromMs(2_000_000) });
    expect(got.get("wg-s2s-new")).toEqual({ rxBytes: 0n, txBytes: 0n });
    expect([...got.keys()].sort()).toEqual(["wg-access", "wg-s2s-new"]);
  });
});
