import { join } from "node:path";
import { writeJsonAtomic } from "../../util/atomic.js";
import type { Logger } from "../../util/log.js";
import { isRecord, readEntryDir, readJson, sameJson, unlinkIfPresent, type StateEntry } from "./files.js";
import { isValidKey } from "./keys.js";

// What the control plane hands down to the node API (docs/node-api.md): metadata,
// data entries and the secret index. NodeState only reads it through this interface, so
// there is exactly one copy: in the agent that is the desired-state store (./store-downstream.ts,
// filled by registration, the state pull and node_state_updated / node_secrets_updated);
// without an agent (tests, tools) it is FileDownstream, a cache of its own under data_dir/state.

export interface SecretRef {
  key: string;
  version: number;
}

export type DownstreamKind = "metadata" | "data" | "secrets";

export interface DownstreamChange {
  kind: DownstreamKind;
  keys: string[];
}

export interface Downstream {
  metadata(): Readonly<Record<string, string>>;
  data(): ReadonlyMap<string, StateEntry>;
  secretRefs(): readonly SecretRef[];
  /** One call per changed category, with the keys that changed (added, updated or removed). */
  subscribe(listener: (change: DownstreamChange) => void): () => void;
}

export interface DownstreamUpdate {
  metadata?: Record<string, string>;
  data?: readonly StateEntry[];
  secretRefs?: readonly SecretRef[];
}

// ------------------------------------------------------------------ diffs

export function metadataChanges(before: Readonly<Record<string, string>>, after: Readonly<Record<string, string>>): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => before[k] !== after[k]).sort();
}

export function dataChanges(before: ReadonlyMap<string, StateEntry>, after: ReadonlyMap<string, StateEntry>): string[] {
  const changed = [...after].filter(([k, e]) => !sameJson(before.get(k), e)).map(([k]) => k);
  const removed = [...before.keys()].filter((k) => !after.has(k));
  return [...changed, ...removed].sort();
}

export function secretChanges(before: readonly SecretRef[], after: readonly SecretRef[]): string[] {
  const a = new Map(before.map((r) => [r.key, r.version]));
  const b = new Map(after.map((r) => [r.key, r.version]));
  return [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k)).sort();
}

/** Data entries keyed by name; entries with invalid keys are dropped with a warning (docs/node-api.md). */
export function dataMap(entries: readonly StateEntry[], log: Logger): Map<string, StateEntry> {
  const out = new Map<string, StateEntry>();
  for (const e of entries) {
    if (!isValidKey(e.key)) {
      log.warn({ key: e.key }, "dropping data entry with an invalid key");
      continue;
    }
    out.set(e.key, { key: e.key, content_type: e.content_type, payload: e.payload, version: e.version, updated_at: e.updated_at });
  }
  return out;
}

export function validRefs(refs: readonly SecretRef[]): SecretRef[] {
  return refs.filter((r) => isValidKey(r.key)).map((r) => ({ key: r.key, version: r.version }));
}

// ------------------------------------------------------------------ file-backed

/** A downstream cache of its own, persisted atomically under `dir` (data_dir/state). */
export class FileDownstream implements Downstream {
  readonly #dir: string;
  readonly #log: Logger;
  #metadata: Record<string, string> = {};
  #data = new Map<string, StateEntry>();
  #secrets: SecretRef[] = [];
  readonly #listeners = new Set<(c: DownstreamChange) => void>();
  /** Serialises writes so file order matches memory order. */
  #io: Promise<void> = Promise.resolve();

  private constructor(dir: string, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  static async open(dir: string, log: Logger): Promise<FileDownstream> {
    const d = new FileDownstream(dir, log);
    const meta = await readJson(join(dir, "metadata.json"));
    if (isRecord(meta)) d.#metadata = Object.fromEntries(Object.entries(meta).filter((e): e is [string, string] => typeof e[1] === "string"));
    d.#data = await readEntryDir(join(dir, "data"), log);
    const secrets = await readJson(join(dir, "secrets.json"));
    if (Array.isArray(secrets)) d.#secrets = validRefs(secrets.filter((r): r is SecretRef => isRecord(r) && typeof r.key === "string" && typeof r.version === "number"));
    return d;
  }

  metadata(): Readonly<Record<string, string>> {
    return this.#metadata;
  }

  data(): ReadonlyMap<string, StateEntry> {
    return this.#data;
  }

  secretRefs(): readonly SecretRef[] {
    return this.#secrets;
  }

  subscribe(listener: (change: DownstreamChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(kind: DownstreamKind, keys: string[]): void {
    for (const l of this.#listeners) l({ kind, keys });
  }

  #queue(fn: () => Promise<void>): Promise<void> {
    const run = this.#io.then(fn);
    this.#io = run.catch(() => undefined);
    return run;
  }

  /** Replaces each category that is present; absent categories are left alone (docs/node-api.md). */
  async apply(update: DownstreamUpdate): Promise<void> {
    if (update.metadata !== undefined) {
      const next = { ...update.metadata };
      const changed = metadataChanges(this.#metadata, next);
      if (changed.length > 0) {
        this.#metadata = next;
        await this.#queue(() => writeJsonAtomic(join(this.#dir, "metadata.json"), next));
        this.#emit("metadata", changed);
      }
    }
    if (update.data !== undefined) {
      const next = dataMap(update.data, this.#log);
      const keys = dataChanges(this.#data, next);
      if (keys.length > 0) {
        this.#data = next;
        const dir = join(this.#dir, "data");
        await this.#queue(async () => {
          for (const k of keys) {
            const e = next.get(k);
            if (e === undefined) await unlinkIfPresent(join(dir, `${k}.json`));
            else await writeJsonAtomic(join(dir, `${k}.json`), e);
          }
        });
        this.#emit("data", keys);
      }
    }
    if (update.secretRefs !== undefined) {
      const next = validRefs(update.secretRefs);
      const changed = secretChanges(this.#secrets, next);
      if (changed.length > 0) {
        this.#secrets = next;
        await this.#queue(() => writeJsonAtomic(join(this.#dir, "secrets.json"), next));
        this.#emit("secrets", changed);
      }
    }
  }
}
