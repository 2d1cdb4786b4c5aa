import { join } from "node:path";
import type { DataWriter } from "../util/atomic.js";
import { StateFiles } from "./journal.js";
import type { Peer } from "../mesh/peer.js";
import type { BridgeDesired } from "../bridge/service.js";
import { bridgeForDisk } from "../bridge/desired.js";

// The desired-state store (docs/architecture.md#inside-the-agent): every source (registration response, signed
// events, the periodic state pull, local config) writes here; reconcilers read their
// slice and converge the kernel. Nothing else touches the kernel.

export interface PolicyRule {
  src: string;
  dst: string;
  port: number;
  protocol: string;
  action: string;
}
export interface Policy {
  id: string;
  rules: PolicyRule[];
}
export interface DataEntry {
  key: string;
  content_type: string;
  payload: unknown;
  version: number;
  updated_at: string;
}
export interface SecretRef {
  key: string;
  version: number;
}

export interface DesiredState {
  peers: Record<string, Peer>;
  policies: Policy[];
  metadata: Record<string, string>;
  data: DataEntry[];
  secret_refs: SecretRef[];
  /** Events whose features arrive later (bridge, access, actions): kept, not dropped. */
  deferred: Record<string, unknown>;
  /** mode: bridge: the control plane's bridge blocks with events folded in (agent/bridge/desired.ts); absent in older caches. */
  bridge?: BridgeDesired;
}

export type Slice = keyof DesiredState;

export function emptyDesiredState(): DesiredState {
  return { peers: {}, policies: [], metadata: {}, data: [], secret_refs: [], deferred: {} };
}

const persistDelayMs = 200;

/** A mutation's report: whole slices, or (cheaper to follow) the ids of the peers it touched. */
export type Change = Slice | { peers: Iterable<string> };

/**
 * `peerIds` is set when the only peer changes were to those ids; undefined when the peers
 * slice may have changed as a whole (or did not change at all).
 */
export type StoreListener = (slices: ReadonlySet<Slice>, state: Readonly<DesiredState>, peerIds: ReadonlySet<string> | undefined) => void;

export class DesiredStateStore {
  #state: DesiredState;
  readonly #files: StateFiles;
  readonly #listeners = new Set<StoreListener>();
  #pendingWrite: Promise<void> = Promise.resolve();
  /** Slices to write whole (any slice but peers forces a snapshot), and peer ids for the journal. */
  #dirtySlices = new Set<Slice>();
  #dirtyPeers = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  onPersistError: (err: unknown) => void = () => undefined;

  private constructor(files: StateFiles, state: DesiredState) {
    this.#files = files;
    this.#state = state;
  }

  /** Loads `cache/desired.json` and its journal, so a restart without the control plane restores the last mesh. */
  static async open(dataDir: string, writer?: DataWriter): Promise<DesiredStateStore> {
    const files = new StateFiles(join(dataDir, "cache", "desired.json"), writer);
    let state = emptyDesiredState();
    try {
      const loaded = await files.load();
      if (loaded.state) state = { ...state, ...(loaded.state as Partial<DesiredState>) };
    } catch (err) {
      // Unreadable: start empty; the next state pull rebuilds it.
      void err;
    }
    return new DesiredStateStore(files, state);
  }

  get state(): Readonly<DesiredState> {
    return this.#state;
  }

  /**
   * Applies a mutation in place; the mutator returns what it actually changed (handlers
   * compare before writing, so an idempotent event reports nothing). No copy of the whole
   * state is made, and a mutator that names the peer ids it touched lets every consumer —
   * reconcilers and the journal — do work in proportion to the change, not to the mesh.
   * Persistence follows asynchronously, coalesced.
   */
  update(mutate: (state: DesiredState) => Iterable<Change> | undefined): ReadonlySet<Slice> {
    const slices = new Set<Slice>();
    let peerIds: Set<string> | undefined;
    let wholePeers = false;
    for (const c of mutate(this.#state) ?? []) {
      if (typeof c === "string") {
        slices.add(c);
        if (c === "peers") wholePeers = true;
      } else {
        slices.add("peers");
        peerIds ??= new Set();
        for (const id of c.peers) peerIds.add(id);
      }
    }
    if (slices.size === 0) return slices;
    if (wholePeers) peerIds = undefined;
    for (const s of slices) if (s !== "peers" || wholePeers) this.#dirtySlices.add(s);
    if (peerIds) for (const id of peerIds) this.#dirtyPeers.add(id);
    this.#schedulePersist();
    for (const l of this.#listeners) l(slices, this.#state, slices.has("peers") ? peerIds : undefined);
    return slices;
  }

  subscribe(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Writes are coalesced over a short window: a burst of events costs one write, not one
   * per event. `flush()` (shutdown, tests) writes at once.
   */
  #schedulePersist(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => void this.#writeNow(), persistDelayMs);
    this.#timer.unref();
  }

  #writeNow(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#dirtySlices.size === 0 && this.#dirtyPeers.size === 0) return this.#pendingWrite;
    const whole = this.#dirtySlices.size > 0;
    const ids = this.#dirtyPeers;
    this.#dirtySlices = new Set();
    this.#dirtyPeers = new Set();
    this.#pendingWrite = this.#pendingWrite.then(async () => {
      try {
        // The values as they are now: a later change to the same peer is simply written again.
        let json = "";
        if (!whole) {
          const ops: Record<string, unknown> = {};
          for (const id of ids) ops[id] = this.#state.peers[id] ?? null;
          json = JSON.stringify(ops);
        }
        if (whole || this.#files.wantsSnapshot(json.length + 1)) await this.#files.writeSnapshot(this.#state.bridge ? { ...this.#state, bridge: bridgeForDisk(this.#state.bridge) } : this.#state);
        else await this.#files.append(json);
      } catch (err) {
        // What failed is not on disk: the next write is a whole snapshot.
        this.#dirtySlices.add("peers");
        this.onPersistError(err);
      }
    });
    return this.#pendingWrite;
  }

  /** Resolves once every update so far is on disk. */
  async flush(): Promise<void> {
    await this.#writeNow();
  }
}
