// Ingress rules the mock control plane hands to bridges (docs/mockcp.md#ingress), with the
// certificates it issues for them: a real control plane obtains and renews certificates; mockcp
// signs them with its own CA (the one of its https listeners when it has one), so a test can
// trust exactly that CA and check the certificate a bridge serves. Rules are stored as sent:
// mockcp does not judge them, so tests can hand a bridge bad rules and see them refused.
import { generateCa, generateServerCert, type Pem } from "../server/tls.js";

export type IngressRuleWire = Record<string, unknown> & { rule_id: string };

export class IngressStore {
  readonly #rules = new Map<string, Map<string, IngressRuleWire>>();
  #ca: Pem | undefined;

  /** The CA that signs issued certificates; without one, a fresh CA is made on first use. */
  useCa(ca: Pem): void {
    this.#ca = ca;
  }

  get caPem(): string {
    this.#ca ??= generateCa();
    return this.#ca.cert;
  }

  /** A certificate and key for `names`, signed by the CA. */
  issue(names: string[]): Pem {
    this.#ca ??= generateCa();
    return generateServerCert(this.#ca, names);
  }

  set(nodeId: string, rule: IngressRuleWire): void {
    let m = this.#rules.get(nodeId);
    if (m === undefined) this.#rules.set(nodeId, (m = new Map()));
    m.set(rule.rule_id, rule);
  }

  /** false when the rule was not there. */
  remove(nodeId: string, ruleId: string): boolean {
    return this.#rules.get(nodeId)?.delete(ruleId) ?? false;
  }

  /** Rules as the bridge receives them (key_pem included: it travels only to the bridge). */
  rules(nodeId: string): IngressRuleWire[] {
    return [...(this.#rules.get(nodeId)?.values() ?? [])];
  }

  /** For the control API and logs: the key never leaves mockcp that way. */
  view(nodeId: string): Record<string, unknown>[] {
    return this.rules(nodeId).map(({ key_pem, ...r }) => ({ ...r, has_key: typeof key_pem === "string" && key_pem !== "" }));
  }

  /** The state document's `ingress_config`, once the node was given ingress rules at all (absent: leave ingress as it is). */
  block(nodeId: string): { ingress_config?: { rules: IngressRuleWire[] } } {
    return this.#rules.has(nodeId) ? { ingress_config: { rules: this.rules(nodeId) } } : {};
  }
}
