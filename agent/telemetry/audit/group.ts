// Kernel audit records arrive one at a time; those of one event share a serial. An event is
// complete on its EOE record, or once its serial has had no new record for `idleMs` (single-
// record events such as USER_* messages have no EOE). At most `maxRecords` are kept per event;
// the rest are counted, not held (docs/telemetry.md#audit).
import { EOE, parseHeader, type AuditRecord } from "./record.js";

export interface GroupedEvent {
  serial: number;
  ms: number;
  records: AuditRecord[];
  /** Records beyond `maxRecords` that were not kept. */
  omitted: number;
}

export interface GrouperOptions {
  emit(event: GroupedEvent): void;
  /** A record whose text has no `audit(<sec>.<ms>:<serial>)` header: not grouped, not sent. */
  malformed(record: AuditRecord, why: string): void;
  idleMs?: number;
  maxRecords?: number;
  /** Most serials open at once; past it the oldest is emitted early (bounded memory under a flood). */
  maxOpen?: number;
  now?: () => number;
}

interface Open extends GroupedEvent {
  lastAt: number;
}

export class AuditGrouper {
  readonly #open = new Map<number, Open>();
  readonly #o: Required<GrouperOptions>;

  constructor(opts: GrouperOptions) {
    this.#o = { idleMs: 1_000, maxRecords: 64, maxOpen: 1_024, now: Date.now, ...opts };
  }

  add(record: AuditRecord): void {
    const header = parseHeader(record.text);
    if (!header) return this.#o.malformed(record, "no audit(<time>:<serial>) header");
    if (record.serial !== 0 && record.serial !== header.serial) return this.#o.malformed(record, `serial ${record.serial} does not match its header's ${header.serial}`);
    let ev = this.#open.get(header.serial);
    if (!ev) {
      if (record.type === EOE) return; // an EOE whose event was already emitted (idle) or never seen
      if (this.#open.size >= this.#o.maxOpen) this.#emitOldest();
      ev = { serial: header.serial, ms: header.ms, records: [], omitted: 0, lastAt: 0 };
      this.#open.set(header.serial, ev);
    }
    ev.lastAt = this.#o.now();
    if (record.type === EOE) return this.#close(ev);
    if (ev.records.length < this.#o.maxRecords) ev.records.push(record);
    else ev.omitted++;
  }

  /** Emits every event idle for `idleMs`; the caller runs it on a timer. */
  sweep(): void {
    const cutoff = this.#o.now() - this.#o.idleMs;
    for (const ev of [...this.#open.values()]) if (ev.lastAt <= cutoff) this.#close(ev);
  }

  /** Emits everything still open (shutdown, or the record stream ended). */
  flush(): void {
    for (const ev of [...this.#open.values()]) this.#close(ev);
  }

  get openCount(): number {
    return this.#open.size;
  }

  #emitOldest(): void {
    const first = this.#open.values().next().value;
    if (first) this.#close(first);
  }

  #close(ev: Open): void {
    this.#open.delete(ev.serial);
    this.#o.emit({ serial: ev.serial, ms: ev.ms, records: ev.records, omitted: ev.omitted });
  }
}
