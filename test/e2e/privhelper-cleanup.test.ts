// `plexd-privhelper --cleanup` (uninstall, purge, recovery) leaves nothing of plexd behind:
// after a mesh on a wireguard-go device, a firewall, a StunProbe that was answered and one
// that a privhelper crash interrupted (its SNAT table outlives it), there is no plexd
// interface, no wireguard-go for it, no UAPI socket, no wireguard-go log in privhelper's
// runtime directory, no table inet plexd or ip plexd_stun, and no plexd-priv-* temp dir.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { addAddress, addNamespace, addVethPair, listLinks, RUN_PREFIX, spawnInNamespace, useHarness } from "./harness/vitest.js";
import { methodByName, PrivCaller, statusName } from "./lib/priv-caller.js";
import { createPrivNode, keepPrivLog, type PrivNode } from "./lib/priv-node.js";
import { firewallSpec, meshSpec, overlappingMeshes, stunBinding } from "./lib/priv-specs.js";
import { nftTables, wireguardGoPids } from "./lib/priv-state.js";
import { ensureBuilt } from "./privhelper-util.js";

useHarness();
afterEach((ctx) => {
  if (ctx.task.result?.state === "fail" && node) keepPrivLog(node, ctx.task.name);
});

const iface = `plexd${RUN_PREFIX.slice(2)}u`;
let nsA: string;
let node: PrivNode;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uapiSocket = `/var/run/wireguard/${iface}.sock`;

/** Everything of plexd's that the test looks for, by name. */
async function leftovers(): Promise<Record<string, unknown>> {
  return {
    interface: (await listLinks(nsA)).some((l) => l.ifname === iface),
    wireguardGo: wireguardGoPids(iface),
    uapiSocket: existsSync(uapiSocket),
    wireguardGoLog: existsSync(join(node.runDir, `wireguard-go-${iface}.log`)),
    tables: (await nftTables(nsA)).filter((t) => t === "inet plexd" || t === "ip plexd_stun"),
    tmp: node.tmpLeftovers(),
  };
}

beforeAll(async () => {
  await ensureBuilt();
  nsA = await addNamespace("pclean");
  const nsS = await addNamespace("pcleans");
  await addVethPair(nsA, `${RUN_PREFIX}u`, nsS, `${RUN_PREFIX}v`);
  await addAddress(nsA, `${RUN_PREFIX}u`, "192.0.2.1/24");
  await addAddress(nsS, `${RUN_PREFIX}v`, "192.0.2.2/24");
  await addAddress(nsS, `${RUN_PREFIX}v`, "192.0.2.3/24");
  const stund = spawnInNamespace({ ns: nsS, name: "stund", argv: ["stund", "-h", "192.0.2.2", "-a", "192.0.2.3", "-p", "3478"] });
  await sleep(300);
  if (stund.exited) throw new Error(`stund exited: ${stund.output()}`);
  node = createPrivNode({ name: "cleanup", ns: nsA, iface });
  await node.start();
}, 120_000);

describe("plexd-privhelper --cleanup", () => {
  it("removes every trace of a mesh, a firewall and StunProbes, also after a crash mid-probe", async () => {
    const caller = new PrivCaller(node.socket);
    try {
      const pair = overlappingMeshes(50, 0, 0);
      const mesh = await caller.call(methodByName("ApplyMesh"), { spec: meshSpec(iface, pair.privateKey, pair.old) });
      expect(statusName(mesh.code), mesh.details).toBe("OK");
      const fw = await caller.call(methodByName("ApplyFirewall"), { spec: firewallSpec(iface, 20, 0) });
      expect(statusName(fw.code), fw.details).toBe("OK");
      const probe = await caller.call(methodByName("StunProbe"), { ip: "192.0.2.2", port: 3478, request: stunBinding(), timeoutMs: 2000 });
      expect(statusName(probe.code), probe.details).toBe("OK");
      expect((probe.response as { fromMeshPort: boolean }).fromMeshPort).toBe(true);
      // A probe nobody answers (192.0.2.9 does not exist) holds table ip plexd_stun for its
      // whole timeout; privhelper dies in that window.
      const silent = caller.call(methodByName("StunProbe"), { ip: "192.0.2.9", port: 3478, request: stunBinding(), timeoutMs: 8000 }, { deadlineMs: 15_000 });
      await expect.poll(async () => (await nftTables(nsA)).includes("ip plexd_stun"), { timeout: 6_000, interval: 50 }).toBe(true);
      await node.kill9();
      await silent;
    } finally {
      caller.close();
    }
    const before = await leftovers();
    // What there is to clean (a wireguard-go log file too, where privhelper keeps one).
    expect(before).toMatchObject({ interface: true, uapiSocket: true, tables: ["inet plexd", "ip plexd_stun"] });
    expect(before.wireguardGo).toHaveLength(1);

    const r = await node.cleanup();
    expect(r.exitCode, r.output).toBe(0);
    await sleep(500); // wireguard-go removes its socket as it exits
    expect(await leftovers()).toEqual({ interface: false, wireguardGo: [], uapiSocket: false, wireguardGoLog: false, tables: [], tmp: [] });
  });
});
