// Teardown and `plexd-privhelper --cleanup`: remove plexd's interfaces (and the
// wireguard-go processes serving them), table inet plexd, and a table ip plexd_stun that a
// privhelper killed mid-StunProbe left behind — only names on the allow-list, so nothing
// foreign can be touched.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TeardownRequest, TeardownResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import { isAllowedInterface } from "../config.js";
import { destroyInterface } from "../mesh/device.js";
import { removeStrayStunSnat, stunTable } from "../os/stun-nat.js";
import type { MeshDeps } from "./apply-mesh.js";

// `purge` changes nothing here: privhelper keeps no files; purging data is the agent's job.
export function makeTeardown(deps: MeshDeps) {
  return (_req: TeardownRequest, ctx: CallContext): Promise<MessageInitShape<typeof TeardownResponseSchema>> =>
    deps.lock(async () => {
      const removed: string[] = [];
      const errors: string[] = [];
      const attempt = async (what: string, fn: () => Promise<void>) => {
        try {
          await fn();
        } catch (err) {
          errors.push(`${what}: ${PlexdError.from(err).message}`);
        }
      };
      const names = new Set(deps.config.allowedInterfaces);
      await attempt("list links", async () => {
        for (const l of await deps.ip.links(ctx.signal)) if (isAllowedInterface(deps.config, l)) names.add(l);
      });
      for (const name of names) {
        await attempt(name, async () => {
          removed.push(...(await destroyInterface(deps, name, ctx.signal)));
        });
      }
      if (await deps.host.which("nft")) {
        await attempt("table inet plexd", async () => {
          const r = await deps.runner.run("nft", ["list", "table", "inet", "plexd"], { allowFailure: true, timeoutMs: 15_000, signal: ctx.signal });
          if (r.exitCode !== 0) return;
          await deps.runner.run("nft", ["delete", "table", "inet", "plexd"], { timeoutMs: 15_000, signal: ctx.signal });
          removed.push("table inet plexd");
        });
        // Same lock as StunProbe (meshDeps), so this never races a probe's own table.
        await attempt(`table ip ${stunTable}`, async () => {
          if (await removeStrayStunSnat(deps.runner, ctx.signal)) removed.push(`table ip ${stunTable}`);
        });
      }
      deps.log.info({ caller: ctx.caller, removed, errors }, "teardown");
      return { removed, errors };
    });
}
