import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTempDir, registerCleanup, spawnInNamespace, type Topology } from "../harness/index.js";

// A DNS server in the test network: Debian's dnsmasq on the hub, answering names under
// `plexd.test` from a hosts file (unknown names there are NXDOMAIN) and nothing else. A node
// uses it through /etc/netns/<ns>/resolv.conf, which `ip netns exec` (how the harness starts
// every process) bind-mounts over /etc/resolv.conf.

export const testDomain = "plexd.test";

export interface TestDns {
  /** Replaces the answers (name → IPv4) and makes dnsmasq read them again. */
  set(hosts: Record<string, string>): Promise<void>;
}

const hostsText = (hosts: Record<string, string>): string => Object.entries(hosts).map(([name, ip]) => `${ip} ${name}\n`).join("");

export async function startDns(topo: Topology, hosts: Record<string, string>): Promise<TestDns> {
  const dir = makeTempDir("dnsmasq", { mode: 0o755 });
  const file = join(dir, "hosts");
  writeFileSync(file, hostsText(hosts), { mode: 0o644 });
  const p = spawnInNamespace({
    ns: topo.hub.ns,
    name: "dnsmasq",
    argv: ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", `--addn-hosts=${file}`, `--local=/${testDomain}/`, `--listen-address=${topo.hub.ip}`, "--bind-interfaces", "--user=root", "--pid-file"],
  });
  await p.waitForLine(/read .* - \d+ names?/, 10_000);
  return {
    async set(next) {
      writeFileSync(file, hostsText(next), { mode: 0o644 });
      p.signal("SIGHUP");
      await new Promise((r) => setTimeout(r, 300));
    },
  };
}

/** Points the node namespace `ns` at the test DNS server (for processes started after this). */
export function useTestDns(topo: Topology, ns: string): void {
  const dir = `/etc/netns/${ns}`;
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, "resolv.conf"), `nameserver ${topo.hub.ip}\noptions timeout:1 attempts:2\n`, { mode: 0o644 });
  registerCleanup(`resolver of ${ns}`, async () => rmSync(dir, { recursive: true, force: true }));
}
