/** One CP request as mockcp received it; tests assert on these. */
export interface LoggedRequest {
  seq: number;
  time: string;
  method: string;
  path: string;
  query: string;
  node_id: string | null;
  status: number;
  headers: Record<string, string>;
  /** Parsed JSON, the text for NDJSON/other text bodies, or null when empty. */
  body: unknown;
}

export interface RequestFilter {
  path?: string;
  path_prefix?: string;
  method?: string;
  node_id?: string;
  since?: number;
}

/** Bounded log of received control-plane requests, oldest dropped first. */
export class RequestLog {
  readonly #entries: LoggedRequest[] = [];
  readonly #cap: number;
  #seq = 0;

  constructor(cap = 10_000) {
    this.#cap = cap;
  }

  add(entry: Omit<LoggedRequest, "seq">): LoggedRequest {
    const full = { seq: ++this.#seq, ...entry };
    this.#entries.push(full);
    if (this.#entries.length > this.#cap) this.#entries.shift();
    return full;
  }

  list(f: RequestFilter = {}): LoggedRequest[] {
    return this.#entries.filter(
      (e) =>
        (f.path === undefined || e.path === f.path) &&
        (f.path_prefix === undefined || e.path.startsWith(f.path_prefix)) &&
        (f.method === undefined || e.method === f.method.toUpperCase()) &&
        (f.node_id === undefined || e.node_id === f.node_id) &&
        (f.since === undefined || e.seq > f.since),
    );
  }

  clear(): void {
    this.#entries.length = 0;
  }
}
