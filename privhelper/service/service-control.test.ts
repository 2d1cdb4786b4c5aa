import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ServiceControlRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { createLogger } from "../log.js";
import type { Host } from "../os/host.js";
import type { Runner } from "../os/run.js";
import { makeServiceControl } from "./service-control.js";

// The transcript of a systemd host: systemctl restart --no-block answers at once with no output.
function setup(systemd: boolean, fail = false) {
  const calls: string[][] = [];
  const runner: Runner = {
    run: async (file, args) => {
      calls.push([file, ...args]);
      if (fail) throw new PlexdError("internal", "systemctl restart --no-block plexd.service: exit 5: Failed to restart plexd.service: Unit plexd.service not found.");
      return { stdout: "", stderr: "", exitCode: 0 };
    },
    spawnDetached: () => 0,
  };
  const host = { exists: async (p: string) => systemd && p === "/run/systemd/system" } as unknown as Host;
  return { calls, handler: makeServiceControl({ runner, host, log: createLogger("error") }) };
}
const req = (action: string, checkOnly = false) => create(ServiceControlRequestSchema, { action, checkOnly });

describe("ServiceControl", () => {
  it("restarts plexd's own units only, without waiting for the restart", async () => {
    const { calls, handler } = setup(true);
    await handler(req("restart_agent"));
    await handler(req("restart_all"));
    await handler(req("restart_all", true));
    expect(calls).toEqual([
      ["systemctl", "restart", "--no-block", "plexd.service"],
      ["systemctl", "restart", "--no-block", "plexd-privhelper.service", "plexd.service"],
    ]);
  });

  it("refuses where systemd is not the init system, and unknown actions, before running anything", async () => {
    const none = setup(false);
    await expect(none.handler(req("restart_agent", true))).rejects.toThrow(/systemd is not the init system/);
    await expect(none.handler(req("restart_agent"))).rejects.toThrow(/systemd is not the init system/);
    const sd = setup(true);
    await expect(sd.handler(req("stop_everything"))).rejects.toThrow(/unknown service action/);
    expect([...none.calls, ...sd.calls]).toEqual([]);
  });

  it("passes systemctl's failure on", async () => {
    await expect(setup(true, true).handler(req("restart_agent"))).rejects.toThrow(/Unit plexd.service not found/);
  });
});
