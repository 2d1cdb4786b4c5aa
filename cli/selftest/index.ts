// `plexd self-test`: is this host ready to run plexd? Each check reports ok, warn or fail
// (verdict.ts); the host checks, the control plane as seen from here, then accounts and files.
import { readSelfTestConfig } from "./config.js";
import { checkAccounts, checkFiles } from "./files.js";
import { checkCgroup2, checkNftables, checkPorts, checkTun, checkWireGuard, kernelWireGuard } from "./host.js";
import { checkClock, checkDns, checkTls } from "./net.js";
import type { CheckResult } from "./verdict.js";

export { toJson, toTable, verdictExitCodes, verdictOf, type CheckResult } from "./verdict.js";

/** The check names, in the order they run and are printed. */
export const checkNames = ["wireguard", "tun", "nftables", "cgroup-v2", "udp-ports", "cp-dns", "cp-tls", "clock", "accounts", "config-file", "token-file", "data-dir", "sockets"] as const;

export async function runSelfTest(configFile: string, apiOverride?: string): Promise<CheckResult[]> {
  const cfg = await readSelfTestConfig(configFile, apiOverride);
  const kernel = await kernelWireGuard();
  const results: CheckResult[] = [await checkWireGuard(kernel), await checkTun(kernel), await checkNftables(), await checkCgroup2(), await checkPorts(cfg.meshInterface)];
  let url: URL | undefined;
  try {
    url = cfg.api !== undefined ? new URL(cfg.api) : undefined;
  } catch {
    url = undefined;
  }
  if (url) results.push(await checkDns(url), await checkTls(url, cfg.caFile), await checkClock(url, cfg.caFile));
  else {
    const why = cfg.api === undefined ? `no control-plane URL: api is not set in ${configFile} (or --api)` : `api ${JSON.stringify(cfg.api)} is not a URL`;
    for (const name of ["cp-dns", "cp-tls", "clock"]) results.push({ name, status: "fail", detail: why });
  }
  const { result, ids } = await checkAccounts();
  results.push(result, ...(await checkFiles(cfg, ids)));
  return results;
}
