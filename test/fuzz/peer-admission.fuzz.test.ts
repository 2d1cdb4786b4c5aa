import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../agent/config/schema.js";
import { dispatchEvent } from "../../agent/controlplane/dispatch.js";
import { applyStateDocument, stateDocument } from "../../agent/controlplane/state-pull.js";
import { TargetRenderer, type LocalNode } from "../../agent/reconcile/targets.js";
import { DesiredStateStore } from "../../agent/state/desired.js";
import { createLogger } from "../../agent/util/log.js";
import { privConfigFrom } from "../../privhelper/config.js";
import { Issues, validateMeshSpec } from "../../privhelper/validate.js";
import { checkUniquePeers } from "../../proto/lib/mesh-peer.js";
import type { WgPeer } from "../../privhelper/os/wg.js";
import { ApplyMeshRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { generateWireGuardKeyPair } from "../../proto/lib/keys.js";
import { rng, type Rng } from "../support/rng.js";

// Untrusted peers → admission → the ApplyMesh bytes the agent would send → privhelper's own
// validator. At least 100,000 mutated peer payloads (peer_added, peer_key_rotated,
// peer_endpoint_changed, peer_removed and whole state documents) go through the agent's real
// path: event dispatch or state pull into the desired-state store, the incremental renderer
// with admission, the encoded request (whole and as a delta on what privhelper last applied).
// Oracle: privhelper never rejects a request as invalid — neither the whole spec nor a delta
// merged onto the peers it holds (the count must be 0) — while the peers that are admitted are
// exactly the ones in the request. The seed is random per run and printed with any failure;
// PLEXD_FUZZ_SEED replays a run.

const seed = Number(process.env.PLEXD_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const totalPayloads = 100_000;


const keyOf = (s: string): string => createHash("sha256").update(s).digest("base64");
const poolSize = 24;
const own = generateWireGuardKeyPair();
const local: LocalNode = { nodeId: "n_self", meshIp: "10.100.0.1", privateKey: own.privateKey };

/** Endpoint text: valid and invalid in every way the grammar can be broken. */
function endpoint(r: Rng): unknown {
  const port = r.pick([51820, 1, 65535, 0, 65536, 99999]);
  return r.pick<() => unknown>([
    () => "",
    () => `192.0.2.${r.int(256)}:${port}`,
    () => `[2001:db8::${r.int(100).toString(16)}]:${port}`,
    () => `2001:db8::1:${port}`,
    () => `192.0.2.1:51820\n`,
    () => `192.0.2.1:51820\r\nX: y`,
    () => `peer-${r.int(4)}.example.test:${port}`,
    () => `UPPER.Example.TEST.:51820`,
    () => `-bad-.example:51820`,
    () => `a..b:51820`,
    () => `${"x".repeat(70)}.test:51820`,
    () => `1.2.3:51820`,
    () => `01.2.3.4:51820`,
    () => `[::1%eth0]:51820`,
    () => `[192.0.2.1]:51820`,
    () => `192.0.2.1`,
    () => `:51820`,
    () => ` 192.0.2.1:51820`,
    () => `ünï.test:51820`,
    () => `192.0.2.1:+5`,
    () => 51820,
    () => null,
  ])();
}

function cidr(r: Rng, meshIp: string): string {
  return r.pick<() => string>([
    () => `${meshIp}/32`,
    () => `10.100.0.${r.int(poolSize + 2)}/32`,
    () => "0.0.0.0/0",
    () => "::/0",
    () => "0.0.0.0/1",
    () => "128.0.0.0/1",
    () => `10.${r.int(4)}.0.0/${r.pick([7, 8, 9, 16, 24])}`,
    () => "10.100.0.0/16",
    () => `10.100.0.${r.int(256)}/${r.int(34)}`,
    () => `fd00:${r.int(4).toString(16)}::/${r.pick([7, 15, 16, 17, 48, 128])}`,
    () => "fd00::1/129",
    () => "10.0.0.1",
    () => "10.1.2.3/08",
    () => "10.1.2.3/24",
    () => " 10.1.2.0/24",
    () => "10.1.2.0/24\n",
    () => "::ffff:10.100.0.2/128",
    () => "garbage",
  ])();
}

/** A peer payload: a valid one, then mutated field by field. */
function peerPayload(r: Rng, keys: string[]): Record<string, unknown> {
  const i = r.int(poolSize);
  const meshIp = `10.100.0.${i + 2}`;
  const p: Record<string, unknown> = { id: `n_${i}`, public_key: keys[i], mesh_ip: meshIp, endpoint: `192.0.2.${i}:51820`, allowed_ips: [`${meshIp}/32`], psk: keyOf(`psk${i}`) };
  const mutations = r.int(4);
  for (let m = 0; m < mutations; m++) {
    switch (r.int(9)) {
      case 0:
        p.endpoint = endpoint(r);
        break;
      case 1:
        p.allowed_ips = Array.from({ length: r.pick([0, 1, 2, 3]) }, () => cidr(r, meshIp));
        break;
      case 2:
        if (r.chance(0.02)) p.allowed_ips = Array.from({ length: 1025 }, (_, j) => `10.200.${j >> 8}.${j & 255}/32`);
        else p.allowed_ips = r.pick(["10.1.0.0/24", 7, null, [1, 2], {}]);
        break;
      case 3:
        p.public_key = r.pick([keys[r.int(poolSize)], own.publicKey, keyOf(`fresh${r.int(1000)}`), "short", keyOf("x").replace("=", "A"), keyOf("y").slice(0, -2) + "B=", 42, null]);
        break;
      case 4:
        p.psk = r.pick(["", keyOf(`p${r.int(10)}`), "not-a-key", null, undefined]);
        break;
      case 5:
        p.mesh_ip = r.pick(["10.100.0.2", "10.101.0.1", "192.168.1.1", "fd00::1", "10.100.0.256", "", 3]);
        break;
      case 6:
        p.id = r.pick([`n_${r.int(poolSize)}`, "", 17, null, "x".repeat(300), "n_self"]);
        break;
      case 7:
        delete p[r.pick(["endpoint", "allowed_ips", "psk", "public_key", "mesh_ip"])];
        break;
      default:
        p.extra = { nested: [1, 2, 3] };
    }
  }
  return p;
}

describe("peer admission fuzz", () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it(`no request privhelper rejects as invalid after ${totalPayloads} mutated peer payloads (seed ${seed})`, async () => {
    const r = rng(seed);
    const log = createLogger({ name: "fuzz", level: "silent" });
    let payloads = 0;
    let rejected = 0;
    let requests = 0;
    const admittedSeen = new Set<string>();
    const firstRejections: string[] = [];
    const reject = (what: string, err: unknown): void => {
      rejected++;
      if (firstRejections.length < 5) firstRejections.push(`${what}: ${(err as Error).message}`);
    };

    for (let round = 0; payloads < totalPayloads; round++) {
      const allow = r.chance(0.3);
      const v4 = r.pick([1, 8, 16, 24, 32]);
      const v6 = r.pick([1, 16, 48, 128]);
      const mesh = { interface: "plexd0", allow_default_route: allow, min_route_prefix_v4: v4, min_route_prefix_v6: v6 };
      const dir = mkdtempSync(join(tmpdir(), "plexd-admission-fuzz-"));
      dirs.push(dir);
      const config = parseConfig({ api: "http://127.0.0.1:1", data_dir: dir, mesh, policy: { default: "allow" } });
      const priv = privConfigFrom({ mesh });
      const store = await DesiredStateStore.open(dir);
      const names = new Map([0, 1, 2, 3].map((n) => [`peer-${n}.example.test`, n < 2 ? `192.0.2.${200 + n}` : undefined]));
      const renderer = new TargetRenderer((host, port) => (names.get(host) === undefined ? undefined : `${names.get(host)}:${port}`));
      let changed: Set<string> | undefined;
      store.subscribe((slices, _s, ids) => {
        if (!slices.has("peers")) return;
        if (ids === undefined) changed = undefined;
        else if (changed !== undefined) for (const id of ids) changed.add(id);
      });
      const keys = Array.from({ length: poolSize }, (_, i) => keyOf(`k${round}:${i}`));
      // What privhelper holds: the peers of the last request it applied, and that version.
      let held: Map<string, WgPeer> | undefined;
      let heldVersion = -1;
      const ctx = { store, log, mode: "node" as const, verifiedWith: "current" as const, onSigningKeyRotated: () => undefined, onRotateKeys: () => undefined, triggerReconcile: () => undefined };

      for (let step = 0; step < 200; step++) {
        const op = r.int(20);
        if (op < 10) {
          payloads++;
          dispatchEvent(r.chance(0.8) ? "peer_added" : "peer_key_rotated", `e${step}`, peerPayload(r, keys), ctx);
        } else if (op < 13) {
          payloads++;
          dispatchEvent("peer_endpoint_changed", `e${step}`, { peer_id: `n_${r.int(poolSize)}`, endpoint: endpoint(r) }, ctx);
        } else if (op < 17) {
          dispatchEvent("peer_removed", `e${step}`, { peer_id: `n_${r.int(poolSize)}` }, ctx);
        } else if (op < 18) {
          const list = Array.from({ length: r.int(poolSize) }, () => peerPayload(r, keys));
          payloads += list.length;
          const doc = stateDocument.parse({ peers: list });
          store.update((s) => applyStateDocument(s, doc));
        } else if (op < 19) {
          // A DNS name moves, or stops resolving: its peers are decided again.
          const host = `peer-${r.int(4)}.example.test`;
          names.set(host, r.chance(0.7) ? `192.0.2.${r.int(256)}` : undefined);
          for (const [id, p] of Object.entries(store.state.peers)) if (typeof p.endpoint === "string" && p.endpoint.toLowerCase().startsWith(host)) changed?.add(id);
        } else {
          changed = undefined; // a full render, as at start-up
        }

        const ids = changed;
        changed = new Set();
        renderer.render(store.state, local, config, ids);
        const version = renderer.mesh.version;
        if (version === heldVersion) continue;

        // The whole target, as sent at start and after any failure.
        requests++;
        const whole = fromBinary(ApplyMeshRequestSchema, renderer.mesh.requestBytes());
        let wholePeers: WgPeer[] | undefined;
        try {
          wholePeers = validateMeshSpec(priv, whole.spec).peers;
        } catch (err) {
          reject("whole spec", err);
        }
        // The delta on what privhelper holds, merged as privhelper merges it.
        if (held !== undefined) {
          requests++;
          const delta = fromBinary(ApplyMeshRequestSchema, renderer.mesh.deltaBytes(heldVersion));
          try {
            const d = validateMeshSpec(priv, delta.spec);
            const merged = new Map(held);
            for (const k of delta.removedPeerKeys) merged.delete(k);
            for (const p of d.peers) merged.set(p.publicKey, p);
            const issues = new Issues();
            checkUniquePeers([...merged.values()], issues.add, (i) => `peers[${i}]`);
            issues.throwIfAny();
            const mergedKeys = [...merged.keys()].sort();
            expect(mergedKeys).toEqual((wholePeers ?? []).map((p) => p.publicKey).sort());
          } catch (err) {
            reject("delta", err);
          }
        }
        if (wholePeers !== undefined) {
          held = new Map(wholePeers.map((p) => [p.publicKey, p]));
          heldVersion = version;
          renderer.mesh.confirmed(version);
        }
        // Exactly the admitted peers are sent, and none that is quarantined.
        const admitted = Object.keys(store.state.peers).filter((id) => renderer.admission.admitted(id) !== undefined && id !== local.nodeId);
        expect(whole.spec!.peers.map((p) => p.publicKey).sort()).toEqual(admitted.map((id) => renderer.admission.admitted(id)!.public_key).sort());
        for (const id of renderer.admission.quarantined().keys()) expect(renderer.admission.admitted(id)).toBeUndefined();
        for (const id of admitted) admittedSeen.add(`${round % 7}:${id}`);
      }
      await store.flush();
    }
    console.log(`[fuzz] peer admission: ${payloads} peer payloads, ${requests} ApplyMesh requests checked, rejected by privhelper: ${rejected} (seed ${seed})`);
    expect(firstRejections).toEqual([]);
    expect(rejected).toBe(0);
    expect(payloads).toBeGreaterThanOrEqual(totalPayloads);
    // The oracle is not vacuous: many peers did get through.
    expect(admittedSeen.size).toBeGreaterThan(50);
  }, 300_000);
});
