// Host facilities plexd needs: WireGuard (kernel module or wireguard-go, and wg), the TUN
// device, nftables, cgroup v2 and free UDP ports.
import { execFile } from "node:child_process";
import { createSocket } from "node:dgram";
import { access, constants, open } from "node:fs/promises";
import { delimiter, join } from "node:path";
import type { CheckResult } from "./verdict.js";

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

export async function which(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(delimiter).filter((d) => d.startsWith("/"))) {
    if (await access(join(dir, name), constants.X_OK).then(() => true, () => false)) return join(dir, name);
  }
  return undefined;
}

/** Runs a program (argv, no shell); resolves with its exit code and output, never rejects. */
export function runQuiet(file: string, args: readonly string[], timeoutMs = 5_000): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(file, [...args], { timeout: timeoutMs, env: { ...process.env, LC_ALL: "C" } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 127) : 0;
      resolve({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

/** A loaded module, or one the kernel can load on first use (`ip link add type wireguard` does). */
export async function kernelWireGuard(): Promise<boolean> {
  if (await exists("/sys/module/wireguard")) return true;
  return (await which("modinfo")) !== undefined && (await runQuiet("modinfo", ["-F", "name", "wireguard"])).code === 0;
}

export async function checkWireGuard(kernel: boolean): Promise<CheckResult> {
  const goPath = await which("wireguard-go");
  const wg = await which("wg");
  const impl = kernel ? "kernel module" : goPath ? `wireguard-go (${goPath})` : undefined;
  if (!impl) return { name: "wireguard", status: "fail", detail: "no WireGuard: kernel module absent and wireguard-go not on PATH" };
  if (!wg) return { name: "wireguard", status: "fail", detail: `${impl}, but wg (wireguard-tools) is not on PATH` };
  return { name: "wireguard", status: "ok", detail: `${impl}; wg at ${wg}` };
}

/** Only wireguard-go needs the TUN device: without the kernel module a missing one is fatal. */
export async function checkTun(kernel: boolean): Promise<CheckResult> {
  try {
    const fh = await open("/dev/net/tun", "r+");
    await fh.close();
    return { name: "tun", status: "ok", detail: "/dev/net/tun opens read-write" };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === "EACCES" || code === "EPERM") && process.getuid?.() !== 0) return { name: "tun", status: "warn", detail: `/dev/net/tun: ${code} as uid ${process.getuid?.()}: run self-test as root to check` };
    const why = `/dev/net/tun unusable: ${code ?? (err as Error).message}`;
    return kernel ? { name: "tun", status: "warn", detail: `${why} (kernel WireGuard does not need it; wireguard-go would)` } : { name: "tun", status: "fail", detail: `${why}; wireguard-go needs it` };
  }
}

export async function checkNftables(): Promise<CheckResult> {
  if (!(await which("nft"))) return { name: "nftables", status: "fail", detail: "nft not on PATH" };
  const r = await runQuiet("nft", ["list", "tables"]);
  if (r.code === 0) return { name: "nftables", status: "ok", detail: "nft list tables works" };
  if (process.getuid?.() !== 0) return { name: "nftables", status: "warn", detail: `nft list tables failed as uid ${process.getuid?.()}: run self-test as root to check` };
  return { name: "nftables", status: "fail", detail: `nft list tables failed: ${r.output.split("\n")[0] ?? ""}` };
}

export async function checkCgroup2(): Promise<CheckResult> {
  return (await exists("/sys/fs/cgroup/cgroup.controllers"))
    ? { name: "cgroup-v2", status: "ok", detail: "unified hierarchy at /sys/fs/cgroup" }
    : { name: "cgroup-v2", status: "warn", detail: "no cgroup v2 at /sys/fs/cgroup: hooks run without resource limits" };
}

/** The mesh port and the bridge-mode ports (relay, user access, site-to-site). */
export const plexdPorts = [51820, 51821, 51822, 51823] as const;

export function udpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket({ type: "udp4" });
    s.once("error", () => {
      s.close();
      resolve(false);
    });
    s.bind({ port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/**
 * A busy port is plexd's own when its mesh interface exists (the node is running). Otherwise
 * a busy mesh port stops the mesh (not ready); a busy bridge port only bridge mode (degraded).
 */
export function classifyPorts(busy: readonly number[], meshInterfaceUp: boolean): CheckResult {
  const name = "udp-ports";
  if (busy.length === 0) return { name, status: "ok", detail: `${plexdPorts.join(", ")} free` };
  const list = busy.join(", ");
  if (meshInterfaceUp) return { name, status: "ok", detail: `${list} in use; the mesh interface exists, so plexd is running and holds them` };
  if (busy.includes(plexdPorts[0])) return { name, status: "fail", detail: `${list} in use by another program: the mesh port ${plexdPorts[0]} must be free` };
  return { name, status: "warn", detail: `${list} in use by another program: bridge mode (relay, user access, site-to-site) needs them` };
}

export async function checkPorts(meshInterface: string): Promise<CheckResult> {
  const busy: number[] = [];
  for (const p of plexdPorts) if (!(await udpPortFree(p))) busy.push(p);
  return classifyPorts(busy, await exists(`/sys/class/net/${meshInterface}`));
}
