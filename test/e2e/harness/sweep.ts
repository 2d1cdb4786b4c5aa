import { readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./exec.js";
import { killNamespaceProcesses, listNamespaces } from "./netns.js";
import { PREFIX_PATTERN, RUN_PREFIX } from "./runId.js";

export interface SweepReport {
  namespaces: string[];
  links: string[];
  tempDirs: string[];
  killedPids: number[];
}

/**
 * Removes leftovers carrying `prefix` (default: this run's): namespaces (after stopping every
 * process inside them), interfaces of that name in the machine's own namespace, and temp
 * dirs. Refuses anything that is not a full run prefix, so it can never touch another run's
 * or the machine's own resources.
 */
export async function sweepStale(prefix: string = RUN_PREFIX): Promise<SweepReport> {
  if (!PREFIX_PATTERN.test(prefix)) throw new Error(`sweepStale: ${JSON.stringify(prefix)} is not a run prefix`);
  const report: SweepReport = { namespaces: [], links: [], tempDirs: [], killedPids: [] };

  for (const ns of await listNamespaces(`${prefix}-`)) {
    report.killedPids.push(...(await killNamespaceProcesses(ns)));
    await run(["ip", "netns", "del", ns], { reject: false });
    report.namespaces.push(ns);
  }

  const links = await run(["ip", "-j", "link", "show"], { reject: false });
  for (const l of JSON.parse(links.stdout || "[]") as { ifname: string }[]) {
    if (l.ifname.startsWith(prefix)) {
      await run(["ip", "link", "del", l.ifname], { reject: false });
      report.links.push(l.ifname);
    }
  }

  for (const entry of readdirSync(tmpdir())) {
    if (entry.startsWith(`${prefix}-`)) {
      const dir = join(tmpdir(), entry);
      rmSync(dir, { recursive: true, force: true });
      report.tempDirs.push(dir);
    }
  }
  return report;
}
