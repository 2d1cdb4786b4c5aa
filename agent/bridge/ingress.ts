// Public ingress (docs/bridge.md#ingress): the bridge service that exposes mesh services to the
// internet. Rules come from the control plane's `ingress_config` block (single events already
// folded in); each is checked on its own, and the running set converges to the admitted ones
// (same id and content: untouched; changed: removed, then created). Listeners are agent-side and
// unprivileged: a public port below 1024 is served from a kernel-chosen port on the same address,
// with a firewall redirect in front of it (kernel()).
import type { Logger } from "../util/log.js";
import { formatEndpoint, parseHostPort } from "../../proto/lib/net.js";
import type { BridgeFirewallRule, BridgeInput, BridgeKernelPart, BridgeService, BridgeServiceStatus } from "./service.js";
import { PortListener, RuleRuntime, counterNames, zeroCounters, type IngressLimits, type RuleCounters } from "./ingress-proxy.js";
import { admitRules, parseRule, type IngressRule, type RejectedRule } from "./ingress-rules.js";

export interface IngressDeps {
  log: Logger;
  /** The peers' allowed_ips: a target outside the mesh range must lie in one of them. */
  peerPrefixes?: () => readonly string[];
  now?: () => number;
}

/** Ports below this one cannot be bound without a capability the agent never has. */
const firstUnprivilegedPort = 1024;

export class IngressService implements BridgeService {
  readonly name = "ingress" as const;
  readonly #d: IngressDeps;
  readonly #ports = new Map<number, PortListener>();
  readonly #rules = new Map<string, RuleRuntime>();
  /** The last `ingress_config.rules` seen; an absent block leaves it (and the rules) as they are. */
  #wanted: readonly unknown[] = [];
  #rejected: RejectedRule[] = [];
  #host = "";
  #defaultPort = 443;
  #maxRules = 0;
  #limits: IngressLimits = { maxConnectionsPerRule: 1, dialTimeoutMs: 10_000 };
  /** Counters of rules and listeners already gone, so totals never go back. */
  readonly #gone: RuleCounters = zeroCounters();
  #goneUnmatched = 0;
  #running = false;

  constructor(deps: IngressDeps) {
    this.#d = deps;
  }

  wanted(input: BridgeInput): boolean {
    return input.config.bridge.ingress.enabled;
  }

  async apply(input: BridgeInput): Promise<void> {
    const cfg = input.config.bridge.ingress;
    const listen = parseHostPort(cfg.listen);
    if (listen === undefined) throw new Error(`bridge.ingress.listen: ${cfg.listen} is not host:port`);
    // A new listen address moves every listener.
    if (this.#host !== "" && this.#host !== listen.host) await this.#closeAll();
    this.#host = listen.host;
    this.#defaultPort = listen.port;
    this.#maxRules = cfg.max_rules;
    this.#limits = { maxConnectionsPerRule: cfg.max_connections_per_rule, dialTimeoutMs: cfg.dial_timeout.ms };
    const block = input.desired.ingress_config;
    if (block !== undefined) this.#wanted = Array.isArray(block.rules) ? block.rules : [];
    this.#running = true;
    await this.#converge();
  }

  async stop(): Promise<void> {
    await this.#closeAll();
    this.#running = false;
  }

  async #closeAll(): Promise<void> {
    for (const id of [...this.#rules.keys()]) this.#removeRule(id);
    await Promise.all([...this.#ports.keys()].map((p) => this.#closePort(p)));
  }

  async #converge(): Promise<void> {
    const now = this.#d.now?.() ?? Date.now();
    const ctx = { defaultPort: this.#defaultPort, peerPrefixes: this.#d.peerPrefixes?.() ?? [], now };
    const rejected: RejectedRule[] = [];
    const candidates: IngressRule[] = [];
    const seen = new Set<string>();
    for (const raw of this.#wanted) {
      const r = parseRule(raw, ctx);
      if ("reason" in r) rejected.push(r);
      else if (seen.has(r.id)) rejected.push({ id: r.id, reason: "duplicate rule_id in ingress_config.rules" });
      else {
        seen.add(r.id);
        candidates.push(r);
      }
    }
    const running = new Set([...this.#rules].filter(([id, rt]) => candidates.some((c) => c.id === id && c.key === rt.rule.key)).map(([id]) => id));
    const admission = admitRules(candidates, running, this.#maxRules);
    rejected.push(...admission.rejected);
    const admitted = new Map(admission.admitted.map((r) => [r.id, r]));

    for (const [id, rt] of [...this.#rules]) if (admitted.get(id)?.key !== rt.rule.key) this.#removeRule(id);
    for (const r of admitted.values()) {
      if (this.#rules.has(r.id)) continue;
      const why = await this.#addRule(r);
      if (why !== undefined) rejected.push({ id: r.id, reason: why });
    }
    for (const [port, l] of [...this.#ports]) if (l.rules.size === 0) await this.#closePort(port);

    const before = new Map(this.#rejected.map((r) => [r.id, r.reason]));
    for (const r of rejected) if (before.get(r.id) !== r.reason) this.#d.log.warn({ rule_id: r.id, reason: r.reason }, "ingress rule refused");
    this.#rejected = rejected;
  }

  async #addRule(r: IngressRule): Promise<string | undefined> {
    let l = this.#ports.get(r.listenPort);
    if (l === undefined) {
      l = new PortListener(r.listenPort, () => this.#limits);
      const bind = r.listenPort < firstUnprivilegedPort ? 0 : r.listenPort;
      try {
        await l.listen(this.#host, bind);
      } catch (err) {
        await l.close().catch(() => undefined);
        return `cannot listen on ${formatEndpoint(this.#host, bind)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      }
      this.#ports.set(r.listenPort, l);
    }
    const rt = new RuleRuntime(r);
    l.rules.set(r.id, rt);
    this.#rules.set(r.id, rt);
    const local = l.localPort === r.listenPort ? {} : { local_port: l.localPort };
    this.#d.log.info({ rule_id: r.id, listen_port: r.listenPort, ...local, mode: r.mode, target: r.target, ...(r.sni ? { sni: r.sni } : {}) }, "ingress rule running");
    return undefined;
  }

  #removeRule(id: string): void {
    const rt = this.#rules.get(id);
    if (rt === undefined) return;
    rt.closeAll();
    const c = rt.counters();
    for (const k of counterNames) if (k !== "connections_open") this.#gone[k] += c[k];
    this.#rules.delete(id);
    this.#ports.get(rt.rule.listenPort)?.rules.delete(id);
    this.#d.log.info({ rule_id: id }, "ingress rule removed");
  }

  async #closePort(port: number): Promise<void> {
    const l = this.#ports.get(port);
    if (l === undefined) return;
    this.#ports.delete(port);
    this.#goneUnmatched += l.unmatched;
    await l.close();
  }

  /** Per-rule counters, for status views and tests. */
  ruleCounters(): Record<string, RuleCounters> {
    return Object.fromEntries([...this.#rules].map(([id, rt]) => [id, rt.counters()]));
  }

  get rejected(): readonly RejectedRule[] {
    return this.#rejected;
  }

  status(): BridgeServiceStatus {
    const totals: Record<string, number> = { ...this.#gone, connections_open: 0 };
    for (const rt of this.#rules.values()) {
      const c = rt.counters();
      for (const k of counterNames) totals[k]! += c[k];
    }
    totals.unmatched_sni = this.#goneUnmatched + [...this.#ports.values()].reduce((n, l) => n + l.unmatched, 0);
    totals.rules = this.#rules.size;
    totals.rules_refused = this.#rejected.length;
    const ports = [...this.#ports.values()].map((l) => (l.localPort === l.publicPort ? `${l.publicPort}` : `${l.publicPort}→${l.localPort}`));
    const refused = this.#rejected.map((r) => `${r.id}: ${r.reason}`);
    const detail = !this.#running
      ? "not running"
      : `${this.#rules.size} rule(s)${ports.length > 0 ? ` on ${this.#host} port ${ports.join(", ")}` : ""}` + (refused.length > 0 ? `; refused: ${refused.join("; ")}` : "");
    return {
      name: this.name,
      running: this.#running,
      detail,
      counters: totals,
      heartbeat: { enabled: this.#running, rule_count: this.#rules.size, connection_count: totals.connections_open },
      bridgeHeartbeat: { ingress_enabled: this.#running, active_ingress_rules: this.#rules.size },
      // Announced only while ingress runs: a bridge with ingress off offers none.
      capabilities: this.#running ? { ingress: "true", max_ingress_rules: String(this.#maxRules) } : {},
    };
  }

  /** A redirect per public port below 1024, to the port its listener really has. */
  kernel(): BridgeKernelPart {
    const prerouting: BridgeFirewallRule[] = [];
    const dst = this.#host === "0.0.0.0" || this.#host === "::" ? undefined : this.#host.includes(":") ? `${this.#host}/128` : `${this.#host}/32`;
    for (const l of this.#ports.values()) {
      if (l.publicPort >= firstUnprivilegedPort || l.localPort === 0) continue;
      prerouting.push({ id: `ingress:redirect:${l.publicPort}`, protocol: "tcp", portFrom: l.publicPort, ...(dst ? { dstCidr: dst } : {}), verdict: "redirect", redirectPort: l.localPort });
    }
    return { prerouting };
  }
}
