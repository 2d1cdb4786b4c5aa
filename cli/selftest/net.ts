// The control plane seen from this host: its name resolves, its TLS certificate verifies
// (against control_plane.ca_file when set, else the system's roots), and its clock (the
// HTTP Date header) agrees with ours.
import { lookup } from "node:dns/promises";
import { readFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { connect } from "node:tls";
import type { CheckResult } from "./verdict.js";

const timeoutMs = 5_000;

export async function checkDns(url: URL): Promise<CheckResult> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(host)) return { name: "cp-dns", status: "ok", detail: `${host} is an address literal, nothing to resolve` };
  try {
    const addrs = await lookup(host, { all: true });
    return { name: "cp-dns", status: "ok", detail: `${host} → ${addrs.map((a) => a.address).join(", ")}` };
  } catch (err) {
    return { name: "cp-dns", status: "fail", detail: `${host} does not resolve: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
}

const caOf = async (caFile: string | undefined): Promise<Buffer | undefined> => (caFile ? await readFile(caFile) : undefined);

export async function checkTls(url: URL, caFile: string | undefined): Promise<CheckResult> {
  const name = "cp-tls";
  if (url.protocol !== "https:") return { name, status: "ok", detail: `not applicable: ${url.protocol}// URL (plain HTTP is accepted for loopback hosts only)` };
  let ca: Buffer | undefined;
  try {
    ca = await caOf(caFile);
  } catch (err) {
    return { name, status: "fail", detail: `control_plane.ca_file ${caFile}: ${(err as Error).message}` };
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve) => {
    const sock = connect({ host, port: Number(url.port || 443), ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}), timeout: timeoutMs });
    const done = (r: CheckResult): void => {
      sock.destroy();
      resolve(r);
    };
    sock.once("secureConnect", () => {
      const cert = sock.getPeerCertificate();
      done({ name, status: "ok", detail: `${sock.getProtocol() ?? "TLS"} handshake with ${host}; certificate verified${ca ? ` against ${caFile}` : ""}, valid until ${cert.valid_to}` });
    });
    sock.once("timeout", () => done({ name, status: "fail", detail: `no TLS handshake with ${url.host} within ${timeoutMs} ms` }));
    sock.once("error", (err: NodeJS.ErrnoException) => done({ name, status: "fail", detail: `TLS handshake with ${url.host} failed: ${err.code ?? ""} ${err.message}`.trim() }));
  });
}

/** Allowed offsets: session tokens tolerate 30 s of skew; signed events go stale after 300 s. */
export const clockLimits = { okSeconds: 30, failSeconds: 300 } as const;

export function classifyClock(offsetSeconds: number): CheckResult {
  const abs = Math.abs(offsetSeconds);
  const detail = `local clock ${offsetSeconds >= 0 ? "ahead of" : "behind"} the control plane by ${abs.toFixed(1)} s`;
  if (abs <= clockLimits.okSeconds) return { name: "clock", status: "ok", detail };
  if (abs <= clockLimits.failSeconds) return { name: "clock", status: "warn", detail: `${detail}: session tokens are refused beyond ${clockLimits.okSeconds} s` };
  return { name: "clock", status: "fail", detail: `${detail}: signed control-plane events older than ${clockLimits.failSeconds} s are rejected` };
}

export async function checkClock(url: URL, caFile: string | undefined): Promise<CheckResult> {
  let ca: Buffer | undefined;
  try {
    ca = await caOf(caFile);
  } catch (err) {
    return { name: "clock", status: "fail", detail: `control_plane.ca_file ${caFile}: ${(err as Error).message}` };
  }
  return new Promise((resolve) => {
    const sentAt = Date.now();
    const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, { method: "HEAD", timeout: timeoutMs, ...(ca ? { ca } : {}) }, (res) => {
      res.resume();
      // The header has whole seconds: compare with the middle of the exchange.
      const local = (sentAt + Date.now()) / 2;
      const date = Date.parse(res.headers.date ?? "");
      if (Number.isNaN(date)) resolve({ name: "clock", status: "warn", detail: `the control plane sent no Date header (HTTP ${res.statusCode}): clock not checked` });
      else resolve(classifyClock((local - date) / 1000));
    });
    req.once("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.once("error", (err) => resolve({ name: "clock", status: "fail", detail: `control plane unreachable at ${url.origin}: ${err.message}` }));
    req.end();
  });
}
