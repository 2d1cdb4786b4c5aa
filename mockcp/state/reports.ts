import canonicalize from "canonicalize";
import { z } from "zod";
import { ApiError } from "./apierror.js";
import type { DataEntry } from "./store.js";
import { keyName, parseBody, timestamp } from "./validate.js";

/** ReportEntry has the DataEntry shape. */
export type ReportEntry = DataEntry;


const entrySchema = z
  .object({
    key: z.string().regex(keyName, "invalid key name"),
    content_type: z.string().min(1),
    payload: z.unknown(),
    version: z.number().int().min(1),
    updated_at: timestamp(),
  })
  .refine((e) => e.payload !== undefined, { message: "payload is required", path: ["payload"] });

export const reportBody = z.object({
  entries: z.array(entrySchema).nullish(),
  deleted: z.array(z.string().regex(keyName, "invalid key name")).nullish(),
});

export interface ReportConflict {
  key: string;
  current_version: number;
}

const same = (a: unknown, b: unknown): boolean => canonicalize(a) === canonicalize(b);

/** Reports per node; the node is their only writer, mockcp only checks versions. */
export class ReportStore {
  readonly #byNode = new Map<string, Map<string, ReportEntry>>();

  #of(nodeId: string): Map<string, ReportEntry> {
    let m = this.#byNode.get(nodeId);
    if (m === undefined) {
      m = new Map();
      this.#byNode.set(nodeId, m);
    }
    return m;
  }

  /**
   * Applies one `/report` request atomically. Deletions go first (unknown keys are ignored),
   * so a key deleted and written again in the same batch ends up written. An entry is
   * accepted when its version is higher than the stored one, or equal with identical
   * content_type and payload (a no-op); anything else makes the whole request a 409.
   */
  apply(nodeId: string, raw: unknown): { accepted: number; unchanged: number; deleted: number } {
    const body = parseBody(reportBody, raw);
    const current = this.#of(nodeId);
    const next = new Map(current);
    let deleted = 0;
    for (const key of body.deleted ?? []) if (next.delete(key)) deleted++;
    const conflicts: ReportConflict[] = [];
    let accepted = 0;
    let unchanged = 0;
    for (const e of body.entries ?? []) {
      const entry: ReportEntry = { key: e.key, content_type: e.content_type, payload: e.payload, version: e.version, updated_at: e.updated_at };
      const stored = next.get(e.key);
      if (stored === undefined || e.version > stored.version) {
        next.set(e.key, entry);
        accepted++;
      } else if (e.version === stored.version && e.content_type === stored.content_type && same(e.payload, stored.payload)) {
        unchanged++;
      } else {
        conflicts.push({ key: e.key, current_version: stored.version });
      }
    }
    if (conflicts.length > 0) {
      throw new ApiError(409, "version_conflict", `version conflict on ${conflicts.map((c) => c.key).join(", ")}`, { conflicts });
    }
    this.#byNode.set(nodeId, next);
    return { accepted, unchanged, deleted };
  }

  /** Seeds or overwrites an entry as if the node had reported it (to provoke conflicts in tests). */
  put(nodeId: string, entry: ReportEntry): void {
    this.#of(nodeId).set(entry.key, entry);
  }

  clear(nodeId: string): void {
    this.#byNode.delete(nodeId);
  }

  list(nodeId: string): ReportEntry[] {
    return [...this.#of(nodeId).values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  }
}
