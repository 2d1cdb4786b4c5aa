import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { unitNames } from "./layout.js";

// systemctl is asked only when it can answer for this tree: on the host itself (no --root)
// with systemd running as PID 1 (what sd_booted() checks). Otherwise the steps are skipped and
// the operator is told which ones.

export function systemdManages(root: string): boolean {
  return root === "/" && existsSync("/run/systemd/system");
}

export function skippedBecause(root: string): string {
  return root === "/" ? "systemd is not running as PID 1" : `--root ${root} is not the running system`;
}

export function systemctl(args: string[]): void {
  execFileSync("systemctl", args, { stdio: ["ignore", "inherit", "inherit"] });
}

/** After an install: reload units, enable both, and start them (restart when anything changed). */
export function activate(opts: { changed: boolean; start: boolean }): string[] {
  systemctl(["daemon-reload"]);
  systemctl(["enable", "--quiet", ...unitNames]);
  const done = ["systemctl daemon-reload", `systemctl enable ${unitNames.join(" ")}`];
  if (opts.start) {
    const verb = opts.changed ? "restart" : "start";
    systemctl([verb, ...unitNames]);
    done.push(`systemctl ${verb} ${unitNames.join(" ")}`);
  }
  return done;
}

/** Before an uninstall: stop and disable both (the agent first: it requires the helper). */
export function deactivate(): string[] {
  try {
    systemctl(["disable", "--now", "--quiet", ...[...unitNames].reverse()]);
  } catch {
    // Not installed as units (or already gone): nothing to stop.
  }
  return [`systemctl disable --now ${[...unitNames].reverse().join(" ")}`];
}
