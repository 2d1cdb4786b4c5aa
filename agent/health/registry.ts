// Health is data, not log lines (docs/architecture.md#rules-the-code-keeps): each condition has a stable code, a
// severity, operator text and the time it began. `plexd status`, `plexd top`, the
// heartbeat status and the node API all read the same registry.

export type Severity = "info" | "warning" | "critical";

export interface HealthCondition {
  code: string;
  severity: Severity;
  text: string;
  since: number;
}

export type HealthListener = (conditions: readonly HealthCondition[]) => void;

export class HealthRegistry {
  readonly #conditions = new Map<string, HealthCondition>();
  readonly #listeners = new Set<HealthListener>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Raises or updates a condition; `since` is kept while the condition persists. */
  set(code: string, severity: Severity, text: string): void {
    const prev = this.#conditions.get(code);
    if (prev && prev.severity === severity && prev.text === text) return;
    this.#conditions.set(code, { code, severity, text, since: prev?.since ?? this.#now() });
    this.#emit();
  }

  clear(code: string): void {
    if (this.#conditions.delete(code)) this.#emit();
  }

  get(code: string): HealthCondition | undefined {
    return this.#conditions.get(code);
  }

  list(): HealthCondition[] {
    return [...this.#conditions.values()].sort((a, b) => a.code.localeCompare(b.code));
  }

  /** Healthy means no warning or critical condition (heartbeat `status`). */
  healthy(): boolean {
    return this.list().every((c) => c.severity === "info");
  }

  subscribe(listener: HealthListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(): void {
    const snapshot = this.list();
    for (const l of this.#listeners) l(snapshot);
  }
}
