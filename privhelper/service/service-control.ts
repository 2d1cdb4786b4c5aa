// ServiceControl: restarts plexd's own units, and nothing else (the unit names are fixed here, not taken from the request). systemctl is
// asked not to wait (--no-block): privhelper answers before a restart of its own unit ends it. Where systemd is not the init system
// (/run/systemd/system is missing, sd_booted(3)'s test) there is nothing to restart through.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceControlRequest, ServiceControlResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { Logger } from "../log.js";
import type { Host } from "../os/host.js";
import type { Runner } from "../os/run.js";

const units: Record<string, readonly string[]> = { restart_agent: ["plexd.service"], restart_all: ["plexd-privhelper.service", "plexd.service"] };

export function makeServiceControl(deps: { runner: Runner; host: Host; log: Logger }) {
  return async (req: ServiceControlRequest): Promise<MessageInitShape<typeof ServiceControlResponseSchema>> => {
    const names = units[req.action];
    if (names === undefined) throw new PlexdError("invalid_argument", `unknown service action ${JSON.stringify(req.action)} (restart_agent or restart_all)`);
    if (!(await deps.host.exists("/run/systemd/system"))) throw new PlexdError("failed_precondition", "systemd is not the init system on this node (no /run/systemd/system): plexd's units cannot be restarted");
    if (req.checkOnly) return {};
    await deps.runner.run("systemctl", ["restart", "--no-block", ...names], { timeoutMs: 30_000 });
    deps.log.info({ units: names }, "units restart requested");
    return {};
  };
}
