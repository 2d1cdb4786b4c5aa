import { describe, expect, it } from "vitest";
import { exposure, list, readUnit, scalar, unitFiles, verifyUnits, yes } from "../support/systemd-unit.js";

// The shipped units, judged by systemd's own tools: they must load cleanly, and their
// exposure (systemd-analyze security, 0 = locked down, 10 = unprotected) must stay within
// the targets docs/hardening.md states. The figures are printed for the CI log.

const targets = { agent: 2.0, privhelper: 5.0 } as const;

describe("systemd units", () => {
  it("pass systemd-analyze verify without a single remark", async () => {
    const r = await verifyUnits();
    expect(r.output).toBe("");
    expect(r.exitCode).toBe(0);
  });

  for (const [role, target] of Object.entries(targets) as [keyof typeof targets, number][]) {
    it(`${role}: systemd-analyze security --offline=yes is at most ${target}`, async () => {
      const { figure, table } = await exposure(unitFiles[role]);
      console.log(`systemd-analyze security --offline=yes ${unitFiles[role].split("/").at(-1)}: ${figure} (target <= ${target})`);
      if (figure > target) console.log(table);
      expect(figure).toBeLessThanOrEqual(target);
    });
  }

  it("keep the privilege split: the agent has no capability, privhelper only its fixed set", () => {
    const agent = readUnit(unitFiles.agent);
    const priv = readUnit(unitFiles.privhelper);
    expect([scalar(agent, "User"), scalar(agent, "Group")]).toEqual(["plexd", "plexd"]);
    expect(list(agent, "CapabilityBoundingSet")).toEqual([]);
    expect(list(agent, "AmbientCapabilities")).toEqual([]);
    expect(yes(scalar(agent, "NoNewPrivileges"))).toBe(true);
    expect([scalar(priv, "User"), scalar(priv, "Group")]).toEqual(["root", "plexd"]);
    expect(list(priv, "CapabilityBoundingSet").sort()).toEqual(
      ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_AUDIT_READ", "CAP_DAC_READ_SEARCH", "CAP_CHOWN", "CAP_SETPCAP"].sort(),
    );
    // wireguard-go must survive a privhelper restart (docs/hardening.md).
    expect(scalar(priv, "KillMode")).toBe("process");
    expect(list(priv, "DeviceAllow")).toEqual(["/dev/net/tun", "rw"]);
  });
});
