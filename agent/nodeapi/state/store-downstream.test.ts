import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PlexdError } from "../../../proto/lib/errors.js";
import { dispatchEvent } from "../../controlplane/dispatch.js";
import { applyStateDocument, stateDocument } from "../../controlplane/state-pull.js";
import { DesiredStateStore } from "../../state/desired.js";
import { createLogger } from "../../util/log.js";
import { NodeState, type StateChange } from "./node-state.js";
import { storeDownstream } from "./store-downstream.js";

// NodeState fed by the agent's desired-state store through the real sources: the event
// dispatcher (node_state_updated, node_secrets_updated) and the state pull.

const log = createLogger({ name: "test", level: "silent" });
let dir: string;
let ac: AbortController;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-storedown-"));
  ac = new AbortController();
});
afterEach(async () => {
  ac.abort();
  await rm(dir, { recursive: true, force: true });
});

const dispatch = (store: DesiredStateStore, type: string, payload: unknown) =>
  dispatchEvent(type, `evt_${type}`, payload, { store, log, mode: "node", verifiedWith: "current", onSigningKeyRotated: () => undefined, onRotateKeys: () => undefined, triggerReconcile: () => undefined });

const entry = (key: string, version: number, payload: unknown) => ({ key, content_type: "application/json", payload, version, updated_at: "2025-01-15T10:30:00Z" });

describe("storeDownstream", () => {
  it("serves what events and the state pull wrote to the store, with per-key changes for WatchState", async () => {
    const store = await DesiredStateStore.open(dir);
    const state = await NodeState.open({ dataDir: dir, nodeId: () => "n_1", cpRequest: async () => ({ status: 404, body: {} }), log, downstream: storeDownstream(store, log, ac.signal) });
    const changes: StateChange[] = [];
    state.subscribe((c) => changes.push(c));

    dispatch(store, "node_state_updated", { metadata: { env: "prod", team: "net" }, data: [entry("cfg", 1, { a: 1 }), entry("../bad", 1, 0)] });
    dispatch(store, "node_secrets_updated", { secret_refs: [{ key: "tls", version: 2 }] });
    expect(state.metadata()).toEqual({ env: "prod", team: "net" });
    expect(state.getData("cfg").payload).toEqual({ a: 1 });
    expect(state.listSecrets()).toEqual([{ key: "tls", version: 2 }]);
    expect(changes).toEqual([
      { kind: "metadata", keys: ["env", "team"] },
      { kind: "data", keys: ["cfg"] },
      { kind: "secrets", keys: ["tls"] },
    ]);

    // node_state_updated with data only leaves metadata alone.
    changes.length = 0;
    dispatch(store, "node_state_updated", { data: [entry("cfg", 2, { a: 2 }), entry("new", 1, "x")] });
    expect(state.metadata()).toEqual({ env: "prod", team: "net" });
    expect(changes).toEqual([{ kind: "data", keys: ["cfg", "new"] }]);

    // The pull replaces every category; only what differs is announced.
    changes.length = 0;
    const doc = stateDocument.parse({ metadata: { env: "prod" }, data: [entry("cfg", 2, { a: 2 })], secret_refs: [{ key: "tls", version: 2 }] });
    store.update((s) => applyStateDocument(s, doc));
    expect(changes).toEqual([
      { kind: "metadata", keys: ["team"] },
      { kind: "data", keys: ["new"] },
    ]);
    expect(state.counts()).toMatchObject({ metadata: 1, data: 1, secrets: 1 });
    expect(() => state.getData("new")).toThrow(PlexdError);

    // One copy: the store persists it (cache/desired.json); NodeState writes no downstream files.
    await store.flush();
    expect(existsSync(join(dir, "cache", "desired.json"))).toBe(true);
    expect(existsSync(join(dir, "state", "metadata.json"))).toBe(false);
    expect(existsSync(join(dir, "state", "data"))).toBe(false);
    await expect(state.applyDownstream({ metadata: {} })).rejects.toThrow(/desired-state store/);

    // After a restart the cached store serves the same state at once.
    const again = await DesiredStateStore.open(dir);
    const reopened = await NodeState.open({ dataDir: dir, nodeId: () => "n_1", cpRequest: async () => ({ status: 404, body: {} }), log, downstream: storeDownstream(again, log, ac.signal) });
    expect(reopened.metadata()).toEqual({ env: "prod" });
    expect(reopened.getData("cfg").version).toBe(2);
  });
});
