import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { PlexdError, isCancellation } from "../../../proto/lib/errors.js";
import { decodeKey32 } from "../../../proto/lib/keys.js";
import { plainWriter, type DataWriter } from "../../util/atomic.js";
import { realClock, type Clock } from "../../util/clock.js";
import type { Logger } from "../../util/log.js";
import { FileDownstream, type Downstream, type DownstreamUpdate, type SecretRef } from "./downstream.js";
import { isRecord, readEntryDir, readJson, unlinkIfPresent, type StateEntry } from "./files.js";
import { checkDelete, versionForPut } from "./if-match.js";
import { isValidKey, assertValidKey } from "./keys.js";
import { decodeBase64, decryptSecret } from "./secrets.js";

// The node API's state (docs/node-api.md): what the control plane hands down
// (metadata, data entries, the secret index; read through a Downstream, which in the agent
// is the desired-state store), the node's own report entries with agent-owned versions, and
// the upstream sync of reports. Reports live under data_dir/state/ and every write is
// atomic, so a restart serves the same state offline. Secret values are never held here:
// GetSecret asks the control plane every time.

export type { SecretRef, StateEntry };

export type SyncState = "synced" | "pending" | "conflict";

export interface EntrySummary {
  key: string;
  version: number;
  content_type: string;
  sync_state?: SyncState;
}

export type StateKind = "metadata" | "data" | "secrets" | "report";

export interface StateChange {
  kind: StateKind;
  keys: string[];
}

/** One request to the control plane; throws on network errors and timeouts. */
export type CpRequestFn = (
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  signal?: AbortSignal,
) => Promise<{ status: number; body: unknown }>;

export interface NodeStateOptions {
  dataDir: string;
  /** Writes the report files (the agent's DataDirFence); default plain writes. */
  writer?: DataWriter;
  /** The registered node id (path parameter of /secrets and /report). */
  nodeId: () => string;
  cpRequest: CpRequestFn;
  /** The node secret key, 32 bytes; read per call because rotation replaces it. */
  nsk?: () => Promise<Uint8Array>;
  log: Logger;
  clock?: Clock;
  /** node_api.report_debounce, default 5 s. */
  reportDebounceMs?: number;
  /**
   * Where metadata, data and the secret index come from. The agent passes its desired-state
   * store (one source of truth); without it NodeState keeps a file cache of its own.
   */
  downstream?: Downstream;
}

export const maxReportPayloadBytes = 1024 * 1024;
export const maxReportEntries = 1000;

interface PendingFile {
  pending: string[];
  conflict: string[];
}

export class NodeState {
  readonly #dir: string;
  readonly #opts: NodeStateOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #writer: DataWriter;
  #down: Downstream;
  #reports = new Map<string, StateEntry>();
  #pending = new Set<string>();
  #conflict = new Set<string>();
  /** Bumped on every local write of a key, so a sync only clears keys it actually sent. */
  #writeSeq = new Map<string, number>();
  #lastChangeAt = 0;
  #wake: (() => void) | undefined;
  readonly #listeners = new Set<(c: StateChange) => void>();
  /** Serialises writes so file order matches memory order. */
  #io: Promise<void> = Promise.resolve();

  private constructor(opts: NodeStateOptions, down: Downstream) {
    this.#opts = opts;
    this.#dir = join(opts.dataDir, "state");
    this.#clock = opts.clock ?? realClock;
    this.#log = opts.log;
    this.#writer = opts.writer ?? plainWriter;
    this.#down = down;
    // Lives as long as this NodeState, which lives as long as its downstream.
    down.subscribe((c) => this.#emit(c));
  }

  static async open(opts: NodeStateOptions): Promise<NodeState> {
    const dir = join(opts.dataDir, "state");
    const s = new NodeState(opts, opts.downstream ?? (await FileDownstream.open(dir, opts.log)));
    s.#reports = await readEntryDir(join(s.#dir, "report"), s.#log);
    const pending = await readJson(join(s.#dir, "report-pending.json"));
    if (isRecord(pending)) {
      for (const k of Array.isArray(pending.pending) ? pending.pending : []) if (typeof k === "string" && isValidKey(k)) s.#pending.add(k);
      for (const k of Array.isArray(pending.conflict) ? pending.conflict : []) if (typeof k === "string" && isValidKey(k)) s.#conflict.add(k);
    }
    return s;
  }

  // ------------------------------------------------------------------ reads

  metadata(): Record<string, string> {
    return { ...this.#down.metadata() };
  }

  metadataValue(key: string): string {
    const meta = this.#down.metadata();
    const v = meta[key];
    if (v === undefined || !Object.hasOwn(meta, key)) throw new PlexdError("not_found", `no metadata key ${JSON.stringify(key)}`);
    return v;
  }

  listData(): EntrySummary[] {
    return [...this.#down.data().values()].sort((a, b) => a.key.localeCompare(b.key)).map((e) => ({ key: e.key, version: e.version, content_type: e.content_type }));
  }

  getData(key: string): StateEntry {
    assertValidKey(key);
    const e = this.#down.data().get(key);
    if (e === undefined) throw new PlexdError("not_found", `no data entry ${JSON.stringify(key)}`);
    return e;
  }

  listSecrets(): SecretRef[] {
    return [...this.#down.secretRefs()].sort((a, b) => a.key.localeCompare(b.key)).map((r) => ({ ...r }));
  }

  listReports(): EntrySummary[] {
    const keys = new Set([...this.#reports.keys()]);
    return [...keys]
      .sort((a, b) => a.localeCompare(b))
      .map((key) => {
        const e = this.#reports.get(key)!;
        return { key, version: e.version, content_type: e.content_type, sync_state: this.#syncState(key) };
      });
  }

  getReport(key: string): StateEntry {
    assertValidKey(key);
    const e = this.#reports.get(key);
    if (e === undefined) throw new PlexdError("not_found", `no report entry ${JSON.stringify(key)}`);
    return e;
  }

  counts(): { metadata: number; data: number; secrets: number; reports: number; reports_pending: number } {
    return {
      metadata: Object.keys(this.#down.metadata()).length,
      data: this.#down.data().size,
      secrets: this.#down.secretRefs().length,
      reports: this.#reports.size,
      reports_pending: this.#pending.size,
    };
  }

  /** Keys still to be sent upstream, and keys parked after a repeated conflict. */
  syncStatus(): { pending: string[]; conflict: string[] } {
    return { pending: [...this.#pending].sort(), conflict: [...this.#conflict].sort() };
  }

  #syncState(key: string): SyncState {
    if (this.#conflict.has(key)) return "conflict";
    return this.#pending.has(key) ? "pending" : "synced";
  }

  subscribe(listener: (change: StateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(change: StateChange): void {
    if (change.keys.length === 0) return;
    for (const l of this.#listeners) l(change);
  }

  #queue(fn: () => Promise<void>): Promise<void> {
    const run = this.#io.then(fn);
    this.#io = run.catch(() => undefined);
    return run;
  }

  /** Resolves when every write so far is on disk. */
  async flush(): Promise<void> {
    await this.#io;
  }

  // ------------------------------------------------------------------ downstream

  /**
   * Replaces each category that is present (docs/node-api.md); absent categories are left alone.
   * Only for a NodeState with its own file cache: the agent's comes from the desired-state
   * store, which its sources write directly.
   */
  async applyDownstream(update: DownstreamUpdate): Promise<void> {
    if (!(this.#down instanceof FileDownstream)) throw new PlexdError("failed_precondition", "node state is fed by the desired-state store");
    await this.#down.apply(update);
  }

  // ------------------------------------------------------------------ reports

  async putReport(req: { key: string; contentType: string; payload: unknown; ifMatch?: number | undefined }): Promise<StateEntry> {
    assertValidKey(req.key);
    if (req.contentType === "") throw new PlexdError("invalid_argument", "content_type is required");
    if (req.contentType.length > 255) throw new PlexdError("invalid_argument", "content_type is longer than 255 characters");
    if (req.payload === undefined) throw new PlexdError("invalid_argument", "payload is required (any JSON value)");
    let serialized: string | undefined;
    try {
      serialized = JSON.stringify(req.payload);
    } catch {
      serialized = undefined;
    }
    if (serialized === undefined) throw new PlexdError("invalid_argument", "payload is not valid JSON");
    if (Buffer.byteLength(serialized) > maxReportPayloadBytes) {
      throw new PlexdError("resource_exhausted", `payload is larger than ${maxReportPayloadBytes} bytes serialized`);
    }
    const current = this.#reports.get(req.key);
    const version = versionForPut(current?.version, req.ifMatch);
    if (current === undefined && this.#reports.size >= maxReportEntries) {
      throw new PlexdError("resource_exhausted", `at most ${maxReportEntries} report entries`);
    }
    const entry: StateEntry = {
      key: req.key,
      content_type: req.contentType,
      payload: JSON.parse(serialized) as unknown,
      version,
      updated_at: new Date(this.#clock.now()).toISOString(),
    };
    this.#reports.set(req.key, entry);
    this.#markWritten(req.key);
    await this.#queue(async () => {
      await this.#writer.writeJsonAtomic(join(this.#dir, "report", `${req.key}.json`), entry);
      await this.#writePending();
    });
    this.#emit({ kind: "report", keys: [req.key] });
    return entry;
  }

  async deleteReport(req: { key: string; ifMatch?: number | undefined }): Promise<void> {
    assertValidKey(req.key);
    checkDelete(this.#reports.get(req.key)?.version, req.ifMatch);
    this.#reports.delete(req.key);
    this.#markWritten(req.key);
    await this.#queue(async () => {
      await unlinkIfPresent(join(this.#dir, "report", `${req.key}.json`));
      await this.#writePending();
    });
    this.#emit({ kind: "report", keys: [req.key] });
  }

  #markWritten(key: string): void {
    this.#writeSeq.set(key, (this.#writeSeq.get(key) ?? 0) + 1);
    this.#pending.add(key);
    this.#conflict.delete(key); // a local write takes a parked key back into the sync
    this.#lastChangeAt = this.#clock.now();
    this.#wake?.();
  }

  #writePending(): Promise<void> {
    const file: PendingFile = { pending: [...this.#pending].sort(), conflict: [...this.#conflict].sort() };
    return this.#writer.writeJsonAtomic(join(this.#dir, "report-pending.json"), file);
  }

  // ------------------------------------------------------------------ upstream sync

  /**
   * Sends pending report keys after `report_debounce` without further changes (docs/node-api.md).
   * Failures keep the keys and retry at the next debounce tick. Runs until `signal` aborts.
   */
  async runReportSync(signal: AbortSignal): Promise<void> {
    const debounce = this.#opts.reportDebounceMs ?? 5000;
    while (!signal.aborted) {
      try {
        if (this.#sendable().length === 0) await this.#waitForChange(signal);
        // Debounce: send once `debounce` has passed since the last write (or since the
        // previous attempt, when retrying a failed batch).
        const start = this.#clock.now();
        for (;;) {
          const wait = Math.max(this.#lastChangeAt, start) + debounce - this.#clock.now();
          if (wait <= 0) break;
          await this.#clock.sleep(wait, signal);
        }
        await this.syncOnce(signal);
      } catch (err) {
        if (signal.aborted || isCancellation(err)) return;
        this.#log.warn({ err: PlexdError.from(err).message }, "report sync failed; retrying at the next debounce tick");
      }
    }
  }

  #waitForChange(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#wake = undefined;
        const err = new Error("The operation was aborted");
        err.name = "AbortError";
        reject(err);
      };
      this.#wake = () => {
        this.#wake = undefined;
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  #sendable(): string[] {
    return [...this.#pending].filter((k) => !this.#conflict.has(k)).sort();
  }

  /**
   * One upload of every pending key. Returns true when the control plane accepted the batch.
   * On 409 the conflicting entries jump to current_version + 1 and the batch is resent once;
   * entries that conflict again are parked as `conflict` until they are written locally again.
   */
  async syncOnce(signal?: AbortSignal): Promise<boolean> {
    const keys = this.#sendable();
    if (keys.length === 0) return true;
    const path = `/v1/nodes/${encodeURIComponent(this.#opts.nodeId())}/report`;
    const sentSeq = new Map(keys.map((k) => [k, this.#writeSeq.get(k) ?? 0]));
    const batch = (): { entries: StateEntry[]; deleted: string[] } => ({
      entries: keys.flatMap((k) => {
        const e = this.#reports.get(k);
        return e === undefined ? [] : [e];
      }),
      deleted: keys.filter((k) => !this.#reports.has(k)),
    });

    let res = await this.#opts.cpRequest("POST", path, batch(), signal);
    if (res.status === 409) {
      const conflicts = parseConflicts(res.body);
      await this.#bumpVersions(conflicts);
      res = await this.#opts.cpRequest("POST", path, batch(), signal);
      if (res.status === 409) {
        const again = parseConflicts(res.body).map((c) => c.key).filter((k) => keys.includes(k));
        for (const k of again) this.#conflict.add(k);
        await this.#queue(() => this.#writePending());
        this.#log.warn({ keys: again }, "report entries still conflict after one resend; parked until written again");
        if (again.length > 0) for (const k of again) this.#emit({ kind: "report", keys: [k] });
        return false;
      }
    }
    if (res.status < 200 || res.status >= 300) {
      this.#log.warn({ status: res.status }, "report sync rejected; keeping the batch for the next tick");
      return false;
    }
    const cleared: string[] = [];
    for (const k of keys) {
      if ((this.#writeSeq.get(k) ?? 0) === sentSeq.get(k)) {
        this.#pending.delete(k);
        cleared.push(k);
      }
    }
    await this.#queue(() => this.#writePending());
    if (cleared.length > 0) this.#emit({ kind: "report", keys: cleared });
    return true;
  }

  async #bumpVersions(conflicts: { key: string; current_version: number }[]): Promise<void> {
    const touched: StateEntry[] = [];
    for (const c of conflicts) {
      const e = this.#reports.get(c.key);
      if (e === undefined) continue;
      const bumped = { ...e, version: c.current_version + 1 };
      this.#reports.set(c.key, bumped);
      touched.push(bumped);
    }
    await this.#queue(async () => {
      for (const e of touched) await this.#writer.writeJsonAtomic(join(this.#dir, "report", `${e.key}.json`), e);
    });
    if (touched.length > 0) this.#emit({ kind: "report", keys: touched.map((e) => e.key) });
  }

  // ------------------------------------------------------------------ secrets

  /**
   * Fetches and decrypts one secret (docs/node-api.md). Every call goes to the control plane; the
   * plaintext is returned and forgotten, never cached, logged or written.
   */
  async getSecret(key: string, signal?: AbortSignal): Promise<{ key: string; value: string; version: number }> {
    assertValidKey(key);
    const path = `/v1/nodes/${encodeURIComponent(this.#opts.nodeId())}/secrets/${encodeURIComponent(key)}`;
    let res: { status: number; body: unknown };
    try {
      res = await this.#opts.cpRequest("GET", path, undefined, signal);
    } catch (err) {
      if (signal?.aborted === true) throw PlexdError.from(err);
      throw new PlexdError("unavailable", "control plane unavailable", { cause: err });
    }
    if (res.status === 404) throw new PlexdError("not_found", `no secret ${JSON.stringify(key)}`);
    if (res.status === 403) throw new PlexdError("permission_denied", `this node may not read secret ${JSON.stringify(key)}`);
    if (res.status < 200 || res.status >= 300) throw new PlexdError("unavailable", "control plane unavailable");
    const body = isRecord(res.body) ? res.body : {};
    const nsk = await (this.#opts.nsk ?? (() => readNsk(this.#opts.dataDir)))().catch(() => {
      throw new PlexdError("internal", "decryption failed");
    });
    const value = decryptSecret(nsk, decodeBase64(body.nonce), decodeBase64(body.ciphertext));
    const version = typeof body.version === "number" ? body.version : (this.#down.secretRefs().find((r) => r.key === key)?.version ?? 0);
    return { key, value, version };
  }
}

function parseConflicts(body: unknown): { key: string; current_version: number }[] {
  if (!isRecord(body) || !Array.isArray(body.conflicts)) return [];
  return body.conflicts.filter(
    (c): c is { key: string; current_version: number } => isRecord(c) && typeof c.key === "string" && typeof c.current_version === "number",
  );
}

/** data_dir/node_secret_key holds the NSK base64 (docs/node-api.md). */
export async function readNsk(dataDir: string): Promise<Uint8Array> {
  const text = (await readFile(join(dataDir, "node_secret_key"), "utf8")).trim();
  return decodeKey32(text, "node_secret_key");
}
