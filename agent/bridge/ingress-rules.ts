// Ingress rules as the control plane sends them (`ingress_config.rules[]`, `ingress_rule_assigned`),
// checked one by one: a bad rule is refused with its reason and never stops the others
// (docs/bridge.md#ingress). Certificates and keys are checked here and then held in memory only.
import { X509Certificate, createPrivateKey } from "node:crypto";
import { createSecureContext, type SecureContext } from "node:tls";
import { z } from "zod";
import { cidrContains, formatEndpoint, isMeshIp, parseCidr, parseHostPort } from "../../proto/lib/net.js";

export type IngressMode = "passthrough" | "terminate";

/** A rule that passed every check; `key` compares content (upsert by id: same key, no change). */
export interface IngressRule {
  id: string;
  listenPort: number;
  targetHost: string;
  targetPort: number;
  target: string;
  mode: IngressMode;
  /** Lower case; undefined for a rule that owns its port alone. */
  sni: string | undefined;
  /** terminate only: built once, from cert_pem and key_pem, which are not kept anywhere else. */
  tls: SecureContext | undefined;
  /** Served certificate's validity end (terminate), for status. */
  certNotAfter: string | undefined;
  key: string;
}

export interface RejectedRule {
  id: string;
  reason: string;
}

const wireRule = z.object({
  rule_id: z.string().min(1, "must not be empty").max(128, "at most 128 characters"),
  listen_port: z.number().int().min(1).max(65535).nullish(),
  target_addr: z.string(),
  mode: z.enum(["passthrough", "terminate"], { error: "must be passthrough or terminate" }),
  cert_pem: z.string().nullish(),
  key_pem: z.string().nullish(),
  sni: z.string().nullish(),
});

const sniRe = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export interface RuleContext {
  /** Port of `bridge.ingress.listen`: the default `listen_port`. */
  defaultPort: number;
  /** Prefixes a target may lie in besides the mesh range: the peers' `allowed_ips`. */
  peerPrefixes: readonly string[];
  now: number;
}

/** The id of anything that looks like a rule, for the reason line of one that is not. */
export function ruleIdOf(raw: unknown): string {
  return typeof raw === "object" && raw !== null && typeof (raw as { rule_id?: unknown }).rule_id === "string" ? (raw as { rule_id: string }).rule_id : "?";
}

/** One rule, or every reason it is refused (with its field). Never echoes key material. */
export function parseRule(raw: unknown, ctx: RuleContext): IngressRule | RejectedRule {
  const id = ruleIdOf(raw);
  const parsed = wireRule.safeParse(raw);
  if (!parsed.success) return { id, reason: parsed.error.issues.map((i) => `${i.path.join(".") || "rule"}: ${i.message}`).join("; ") };
  const r = parsed.data;
  const problems: string[] = [];
  const hp = parseHostPort(r.target_addr);
  if (hp === undefined) problems.push("target_addr: must be ip:port");
  else if (!targetAllowed(hp.host, ctx.peerPrefixes)) problems.push(`target_addr: ${hp.host} is neither a mesh address (10.100.0.0/16) nor inside a peer's allowed_ips`);
  const sni = r.sni == null || r.sni === "" ? undefined : r.sni.toLowerCase();
  if (sni !== undefined && !sniRe.test(sni)) problems.push("sni: must be a DNS name");
  let tls: SecureContext | undefined;
  let certNotAfter: string | undefined;
  if (r.mode === "terminate") {
    const checked = checkCertificate(r.cert_pem ?? "", r.key_pem ?? "", ctx.now);
    if (typeof checked === "string") problems.push(checked);
    else ({ tls, notAfter: certNotAfter } = checked);
  } else if ((r.cert_pem ?? "") !== "" || (r.key_pem ?? "") !== "") problems.push("cert_pem/key_pem: only for mode terminate");
  if (problems.length > 0 || hp === undefined) return { id, reason: problems.join("; ") };
  const listenPort = r.listen_port ?? ctx.defaultPort;
  // Content identity without the key itself: the certificate text stands for both (a new key means a new certificate).
  const key = JSON.stringify([listenPort, r.target_addr, r.mode, sni ?? "", r.cert_pem ?? ""]);
  return { id: r.rule_id, listenPort, targetHost: hp.host, targetPort: hp.port, target: formatEndpoint(hp.host, hp.port), mode: r.mode, sni, tls, certNotAfter, key };
}

function targetAllowed(host: string, peerPrefixes: readonly string[]): boolean {
  if (isMeshIp(host)) return true;
  const ip = parseCidr(host.includes(":") ? `${host}/128` : `${host}/32`, true);
  if (ip === undefined) return false;
  return peerPrefixes.some((p) => {
    const c = parseCidr(p, true);
    // A default route among a peer's allowed_ips (full tunnel) does not make the internet a target.
    return c !== undefined && c.bits > 0 && c.family === ip.family && cidrContains(c, ip);
  });
}

function checkCertificate(certPem: string, keyPem: string, now: number): { tls: SecureContext; notAfter: string } | string {
  if (certPem === "" || keyPem === "") return "cert_pem and key_pem: required for mode terminate";
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return "cert_pem: not a PEM certificate";
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    // The parser's message may quote the input; only say what is wrong.
    return "key_pem: not a PEM private key";
  }
  if (!cert.checkPrivateKey(key)) return "key_pem: does not match the certificate in cert_pem";
  const notAfter = Date.parse(cert.validTo);
  if (!Number.isNaN(notAfter) && notAfter < now) return `cert_pem: expired on ${new Date(notAfter).toISOString()}`;
  try {
    // The whole chain as sent (leaf first); TLS 1.2 is the oldest version served.
    return { tls: createSecureContext({ cert: certPem, key: keyPem, minVersion: "TLSv1.2" }), notAfter: new Date(notAfter).toISOString() };
  } catch (err) {
    return `cert_pem/key_pem: unusable for TLS (${(err as { code?: string }).code ?? "error"})`;
  }
}

/**
 * Picks the rules that may run together, keeping those already running first so a newcomer
 * never displaces them: at most `maxRules`, a shared port only when every rule on it has an
 * `sni`, and one rule per (port, sni).
 */
export function admitRules(candidates: readonly IngressRule[], running: ReadonlySet<string>, maxRules: number): { admitted: IngressRule[]; rejected: RejectedRule[] } {
  const ordered = [...candidates.filter((r) => running.has(r.id)), ...candidates.filter((r) => !running.has(r.id))];
  const admitted: IngressRule[] = [];
  const rejected: RejectedRule[] = [];
  const byPort = new Map<number, IngressRule[]>();
  for (const r of ordered) {
    const onPort = byPort.get(r.listenPort) ?? [];
    let reason: string | undefined;
    if (admitted.length >= maxRules) reason = `more than bridge.ingress.max_rules (${maxRules}) rules`;
    else if (onPort.length > 0 && (r.sni === undefined || onPort.some((o) => o.sni === undefined))) {
      reason = `listen_port ${r.listenPort} is shared with rule ${onPort[0]!.id}: rules may share a port only if every one has an sni`;
    } else {
      const twin = onPort.find((o) => o.sni === r.sni);
      if (twin) reason = `sni ${r.sni ?? ""} on port ${r.listenPort} already belongs to rule ${twin.id}`;
    }
    if (reason !== undefined) rejected.push({ id: r.id, reason });
    else {
      admitted.push(r);
      byPort.set(r.listenPort, [...onPort, r]);
    }
  }
  return { admitted, rejected };
}
