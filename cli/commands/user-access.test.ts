// The rendered wg-quick file and the private-key file checks of `plexd bridge user-config`.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import { GetUserAccessConfigResponseSchema, ListUserAccessPeersResponseSchema } from "../../proto/gen/plexd/node/v1/node_pb.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { privateKeyPlaceholder, readPrivateKeyFile, userConfigText, usersText } from "./user-access.js";

const client = generateWireGuardKeyPair();
const server = generateWireGuardKeyPair();
const res = create(GetUserAccessConfigResponseSchema, { publicKey: client.publicKey, label: "alice", addresses: ["10.100.250.2/32"], serverPublicKey: server.publicKey, listenPort: 51822, endpoint: "203.0.113.7:51822", allowedIps: ["10.100.0.0/16", "192.168.50.0/24"], persistentKeepalive: 25 });
const dir = mkdtempSync(join(tmpdir(), "plexd-ua-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("userConfigText", () => {
  it("renders the interface with the client's addresses and the bridge as its one peer", () => {
    expect(userConfigText(res, "203.0.113.7:51822", undefined)).toBe(
      [
        `# plexd user access: alice (public key ${client.publicKey})`,
        "[Interface]",
        `PrivateKey = ${privateKeyPlaceholder}`,
        "Address = 10.100.250.2/32",
        "",
        "[Peer]",
        `PublicKey = ${server.publicKey}`,
        "Endpoint = 203.0.113.7:51822",
        "AllowedIPs = 10.100.0.0/16, 192.168.50.0/24",
        "PersistentKeepalive = 25",
        "",
      ].join("\n"),
    );
  });

  it("with a private key and a PSK both appear; the endpoint override wins", () => {
    const psk = generateWireGuardKeyPair().publicKey;
    const text = userConfigText({ ...res, presharedKey: psk }, "vpn.example.com:51822", client.privateKey);
    expect(text).toContain(`PrivateKey = ${client.privateKey}\n`);
    expect(text).toContain(`PresharedKey = ${psk}\n`);
    expect(text).toContain("Endpoint = vpn.example.com:51822\n");
  });
});

describe("readPrivateKeyFile", () => {
  it("reads a key only from a file no one else can read", async () => {
    const f = join(dir, "key");
    writeFileSync(f, `${client.privateKey}\n`, { mode: 0o600 });
    expect(await readPrivateKeyFile(f)).toBe(client.privateKey);
    chmodSync(f, 0o644);
    await expect(readPrivateKeyFile(f)).rejects.toThrow(`--private-key-file: ${f} is readable by others (mode 644); chmod 600 it`);
    writeFileSync(join(dir, "bad"), "nope\n", { mode: 0o600 });
    await expect(readPrivateKeyFile(join(dir, "bad"))).rejects.toThrow("does not hold a WireGuard private key");
    await expect(readPrivateKeyFile(join(dir, "missing"))).rejects.toThrow("no such file");
  });
});

describe("usersText", () => {
  it("lists the clients and the refused ones with their reasons", () => {
    const r = create(ListUserAccessPeersResponseSchema, {
      enabled: true,
      interfaceName: "wg-access",
      listenPort: 51822,
      publicKey: server.publicKey,
      peers: [{ publicKey: client.publicKey, label: "alice", allowedIps: ["10.100.250.2/32"], rxBytes: 2048n, txBytes: 10n }],
      refused: [{ publicKey: "k", label: "bob", reason: "max_peers (1) reached" }],
    });
    const text = usersText(r, Date.now());
    expect(text).toMatch(/^wg-access on UDP 51822, public key /);
    expect(text).toMatch(/alice\s+\S+\s+10\.100\.250\.2\/32\s+-\s+never/);
    expect(text).toContain("refused bob: max_peers (1) reached");
    expect(usersText(create(ListUserAccessPeersResponseSchema, {}), 0)).toBe("user access does not run on this node");
  });
});
