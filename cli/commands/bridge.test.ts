import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { GetBridgeStatusResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { bridgeText } from "./bridge.js";

describe("bridgeText", () => {
  it("nothing outside bridge mode", () => {
    expect(bridgeText(create(GetBridgeStatusResponseSchema, { enabled: false }))).toBe("");
  });

  it("a line per service, per WireGuard device (a failed one with its reason) and the routes", () => {
    const b = create(GetBridgeStatusResponseSchema, {
      enabled: true,
      services: [{ name: "site_to_site", running: true, detail: "2 tunnels", counters: { tunnels: 2n } }],
      devices: [{ name: "wg-s2s-1a2b3c4d", listenPort: 51823, peers: 1 }, { name: "wg-s2s-5e6f7a8b", listenPort: 51824, peers: 1, error: "ApplyMesh failed at create_interface: boom" }],
      routeCount: 0,
      forwarding: ["plexd0", "wg-s2s-1a2b3c4d"],
    });
    expect(bridgeText(b).split("\n")).toEqual([
      "Bridge",
      "  site_to_site  running  2 tunnels  (tunnels 2)",
      "  device        up       wg-s2s-1a2b3c4d on UDP 51823, 1 peer",
      "  device        FAILED   wg-s2s-5e6f7a8b on UDP 51824, 1 peer: ApplyMesh failed at create_interface: boom",
      "  routes        ok       0 routes, forwarding on plexd0, wg-s2s-1a2b3c4d",
    ]);
  });

  it("a device's handshake and traffic once it has any", () => {
    const now = Date.parse("2026-01-01T00:00:30Z");
    const b = create(GetBridgeStatusResponseSchema, {
      enabled: true,
      devices: [{ name: "wg-s2s-1a2b3c4d", listenPort: 51823, peers: 1, lastHandshake: timestampFromMs(now - 12_000), rxBytes: 2048n, txBytes: 100n }],
    });
    expect(bridgeText(b, now).split("\n")[1]).toBe("  device  up       wg-s2s-1a2b3c4d on UDP 51823, 1 peer, handshake 12s ago, rx 2.0 KiB, tx 100 B");
  });
});
