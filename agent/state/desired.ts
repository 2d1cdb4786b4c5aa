import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeJsonAtomic } from "../util/atomic.js";
import type { Peer } from "../registration/register.js";

// The desired-state store (design.md §3): every source (registration response, signed
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
}

export type Slice = keyof DesiredState;

export function emptyDesiredState(): DesiredState {
  return { peers: {}, policies: [], metadata: {}, data: [], secret_refs: [], deferred: {} };
}

const persistDelayMs = 200;

export type StoreListener = (slices: ReadonlySet<Slice>, state: Readonly<DesiredState>) => void;

export class DesiredStateStore {
  #state: DesiredState;
  readonly #file: string;
  readonly #listeners = new Set<StoreListener>();
  #pendingWrite: Promise<void> = Promise.resolve();
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  onPersistError: (err: unknown) => void = () => undefined;

  private constructor(file: string, state: DesiredState) {
    this.#file = file;
    this.#state = state;
  }

  /** Loads `cache/desired.json`, so a restart without the control plane restores the last mesh. */
  static async open(dataDir: string): Promise<DesiredStateStore> {
    const file = join(dataDir, "cache", "desired.json");
    let state = emptyDesiredState();
    try {
      state = { ...state, ...(JSON.parse(await readFile(file, "utf8")) as Partial<DesiredState>) };
    } catch (err) {
      // Missing or corrupt: start empty; the next state pull rebuilds it.
      void err;
    }
    return new DesiredStateStore(file, state);
  }

  get state(): Readonly<DesiredState> {
    return this.#state;
  }

  /**
   * Applies a mutation in place; the mutator returns the slices it actually changed
   * (handlers compare before writing, so an idempotent event reports nothing). No copy
   * of the whole state is made: at 10,000 peers a per-event clone would make the cost
   * of one event grow with the mesh. Persistence follows asynchronously, coalesced.
   */
  update(mutate: (state: DesiredState) => Iterable<Slice> | undefined): ReadonlySet<Slice> {
    const changed = new Set<Slice>(mutate(this.#state) ?? []);
    if (changed.size === 0) return changed;
    this.#schedulePersist();
    for (const l of this.#listeners) l(changed, this.#state);
    return changed;
  }

  subscribe(listener: StoreListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Writes are coalesced over a short window: the file is the restart cache, and at 10,000
   * peers each write serialises megabytes, so a burst of events must cost one write, not
   * one per event. `flush()` (shutdown, tests) writes at once.
   */
  #schedulePersist(): void {
    if (this.#dirty) return;
    this.#dirty = true;
    this.#timer = setTimeout(() => this.#writeNow(), persistDelayMs);
    this.#timer.unref();
  }

  #writeNow(): Promise<void> {
    clearTimeout(this.#timer);
    if (!this.#dirty) return this.#pendingWrite;
    this.#dirty = false;
    this.#pendingWrite = this.#pendingWrite.then(() => writeJsonAtomic(this.#file, this.#state).catch((err: unknown) => this.onPersistError(err)));
    return this.#pendingWrite;
  }

  /** Resolves once every update so far is on disk. */
  async flush(): Promise<void> {
    await this.#writeNow();
  }
}
