// The node API's user-access answers: a client's configuration by label or key (endpoint from NAT
// discovery, mesh range and access subnets as AllowedIPs), the refusals, and the live peer list.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ReadMeshResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import type { BridgeManager } from "../bridge/manager.js";
import { UserAccessService } from "../bridge/user-access.js";
import { parseConfig } from "../config/schema.js";
import { createLogger } from "../util/log.js";
import { userAccessConfigMsg, userAccessPeersMsg } from "./user-access-view.js";

const device = generateWireGuardKeyPair();
const [alice, bob, carol] = [generateWireGuardKeyPair().publicKey, generateWireGuardKeyPair().publicKey, generateWireGuardKeyPair().publicKey];
const config = parseConfig({ api: "https://cp.example.com", mode: "bridge", bridge: { access_interface: "eth1", access_subnets: ["192.168.50.0/24"], access: [{ type: "wireguard", max_peers: 2 }] } });

async function setup() {
  const svc = new UserAccessService({ log: createLogger({ name: "test", level: "silent" }), dataDir: "/nonexistent", deviceKey: () => Promise.resolve(device) });
  const input = {
    config,
    desired: {
      user_access_config: {
        peers: [
          { public_key: alice, allowed_ips: ["10.100.250.2/32"], label: "alice", psk: device.publicKey },
          { public_key: bob, allowed_ips: ["10.100.250.3/32"], label: "bob" },
          { public_key: carol, allowed_ips: ["10.100.250.4/32"], label: "carol" },
        ],
      },
    },
  };
  await svc.apply(input);
  const bridge = { service: () => svc, input: () => input } as unknown as BridgeManager;
  return { bridge };
}

describe("userAccessConfigMsg", () => {
  it("finds a client by label or public key and fills in what the client needs", async () => {
    const { bridge } = await setup();
    const want = {
      publicKey: alice,
      label: "alice",
      addresses: ["10.100.250.2/32"],
      presharedKey: device.publicKey,
      serverPublicKey: device.publicKey,
      listenPort: 51822,
      endpoint: "203.0.113.10:51822",
      allowedIps: ["10.100.0.0/16", "192.168.50.0/24"],
      persistentKeepalive: 25,
    };
    expect(userAccessConfigMsg(bridge, config, "203.0.113.10:51820", "alice")).toEqual(want);
    expect(userAccessConfigMsg(bridge, config, undefined, alice)).toEqual({ ...want, endpoint: "" });
  });

  it("says why a client is missing: refused with its reason, or unknown; and when user access does not run", async () => {
    const { bridge } = await setup();
    expect(() => userAccessConfigMsg(bridge, config, undefined, "carol")).toThrow('client "carol" was refused: max_peers (2) reached');
    expect(() => userAccessConfigMsg(bridge, config, undefined, "dave")).toThrow('no user-access client "dave"');
    expect(() => userAccessConfigMsg(undefined, config, undefined, "alice")).toThrow("user access does not run on this node");
  });
});

describe("userAccessPeersMsg", () => {
  it("joins the clients with ReadMesh's handshakes and bytes; without privhelper they are listed bare", async () => {
    const { bridge } = await setup();
    const live = create(ReadMeshResponseSchema, { peers: [{ publicKey: alice, endpoint: "198.51.100.7:40000", lastHandshake: timestampFromMs(1_700_000_000_000), rxBytes: 10n, txBytes: 20n }] });
    const r = await userAccessPeersMsg(bridge, { readMesh: () => Promise.resolve(live) } as never);
    expect(r).toMatchObject({ enabled: true, interfaceName: "wg-access", listenPort: 51822, publicKey: device.publicKey });
    expect(r.peers?.map((p) => [p.label, p.endpoint, p.rxBytes, p.lastHandshake !== undefined])).toEqual([
      ["alice", "198.51.100.7:40000", 10n, true],
      ["bob", "", 0n, false],
    ]);
    expect(r.refused).toEqual([{ publicKey: carol, label: "carol", reason: "max_peers (2) reached" }]);
    const bare = await userAccessPeersMsg(bridge, { readMesh: () => Promise.reject(new Error("down")) } as never);
    expect(bare.peers).toHaveLength(2);
    expect(await userAccessPeersMsg(undefined, { readMesh: () => Promise.reject(new Error("unused")) } as never)).toEqual({ enabled: false });
  });
});
