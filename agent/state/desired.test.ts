// The desired-state store on a real temp dir: snapshot + journal, what a restart reads back,
// and what a crash at any point leaves readable.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Peer } from "../mesh/peer.js";
import { DesiredStateStore } from "./desired.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "plexd-store-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const snapshot = () => join(dir, "cache", "desired.json");
const journal = () => join(dir, "cache", "desired.journal");
const peer = (i: number, endpoint = ""): Peer => ({ id: `n_${i}`, public_key: Buffer.alloc(32, i).toString("base64"), mesh_ip: `10.100.0.${i}`, endpoint, allowed_ips: [], psk: "" });
const addPeer = (s: DesiredStateStore, p: Peer) =>
  s.update((st) => {
    st.peers[p.id] = p;
    return [{ peers: [p.id] }];
  });

describe("DesiredStateStore persistence", () => {
  it("peer events append to the journal; a restart replays them over the snapshot", async () => {
    const s = await DesiredStateStore.open(dir);
    s.update((st) => {
      st.metadata = { env: "test" };
      return ["metadata"];
    });
    await s.flush();
    const snapBytes = statSync(snapshot()).size;
    for (let i = 1; i <= 5; i++) {
      addPeer(s, peer(i));
      await s.flush();
    }
    s.update((st) => (delete st.peers.n_2, [{ peers: ["n_2"] }]));
    await s.flush();
    // The snapshot was not rewritten for any of them.
    expect(statSync(snapshot()).size).toBe(snapBytes);
    expect(readFileSync(journal(), "utf8").trim().split("\n")).toHaveLength(1 + 6);

    const again = await DesiredStateStore.open(dir);
    expect(Object.keys(again.state.peers).sort()).toEqual(["n_1", "n_3", "n_4", "n_5"]);
    expect(again.state.metadata).toEqual({ env: "test" });
    expect(statSync(journal()).mode & 0o777).toBe(0o600);
    expect(statSync(snapshot()).mode & 0o777).toBe(0o600);
  });

  it("a change to any other slice writes a snapshot and starts a new journal", async () => {
    const s = await DesiredStateStore.open(dir);
    addPeer(s, peer(1));
    await s.flush();
    addPeer(s, peer(2));
    await s.flush();
    s.update((st) => ((st.policies = [{ id: "p", rules: [] }]), ["policies"]));
    await s.flush();
    expect(readFileSync(journal(), "utf8").trim().split("\n")).toHaveLength(1);
    const snap = JSON.parse(readFileSync(snapshot(), "utf8")) as { peers: object; policies: unknown[] };
    expect(Object.keys(snap.peers).sort()).toEqual(["n_1", "n_2"]);
    expect((await DesiredStateStore.open(dir)).state.policies).toEqual([{ id: "p", rules: [] }]);
  });

  it("drops a torn last line (crash mid-append) and keeps every whole one", async () => {
    const s = await DesiredStateStore.open(dir);
    addPeer(s, peer(1));
    await s.flush();
    addPeer(s, peer(2));
    await s.flush();
    appendFileSync(journal(), '{"n_3":{"id":"n_3","public_k');
    const again = await DesiredStateStore.open(dir);
    expect(Object.keys(again.state.peers).sort()).toEqual(["n_1", "n_2"]);
  });

  it("ignores a journal that belongs to an older snapshot (crash between the two writes)", async () => {
    const s = await DesiredStateStore.open(dir);
    addPeer(s, peer(1));
    await s.flush();
    addPeer(s, peer(2));
    await s.flush();
    const stale = readFileSync(journal(), "utf8");
    s.update((st) => ((st.metadata = { k: "v" }), ["metadata"]));
    addPeer(s, peer(1, "192.0.2.9:51820"));
    await s.flush();
    // As if the new journal header never made it: the old journal beside the new snapshot.
    writeFileSync(journal(), stale + JSON.stringify({ n_1: null }) + "\n");
    const again = await DesiredStateStore.open(dir);
    expect(again.state.peers.n_1?.endpoint).toBe("192.0.2.9:51820");
    expect(Object.keys(again.state.peers).sort()).toEqual(["n_1", "n_2"]);
  });

  it("folds the journal into a snapshot once it outgrows it, so neither grows without bound", async () => {
    const s = await DesiredStateStore.open(dir);
    addPeer(s, peer(1));
    await s.flush();
    for (let round = 0; round < 1000; round++) {
      addPeer(s, peer(1, `192.0.2.1:${10_000 + round}`));
      await s.flush();
    }
    const journalBytes = statSync(journal()).size;
    expect(journalBytes).toBeLessThanOrEqual(64 * 1024 + 512);
    // 1,000 lines of ~150 bytes did not all stay: the journal was folded at least once.
    expect(readFileSync(journal(), "utf8").trim().split("\n").length).toBeLessThan(1000);
    expect((await DesiredStateStore.open(dir)).state.peers.n_1?.endpoint).toBe("192.0.2.1:10999");
  });

  it("tells listeners which peers changed, or that the whole slice did", async () => {
    const s = await DesiredStateStore.open(dir);
    const seen: (string[] | "all" | "-")[] = [];
    s.subscribe((slices, _st, ids) => seen.push(!slices.has("peers") ? "-" : ids ? [...ids] : "all"));
    addPeer(s, peer(1));
    s.update((st) => ((st.peers = { n_9: peer(9) }), ["peers"]));
    s.update((st) => ((st.metadata = { a: "b" }), ["metadata"]));
    s.update(() => undefined);
    expect(seen).toEqual([["n_1"], "all", "-"]);
    await s.flush();
  });
});
