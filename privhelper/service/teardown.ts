// Teardown and `--cleanup`: plexd's interfaces and their wireguard-go, every route and rule with
// privhelper's protocol number, table inet plexd, a table ip plexd_stun left by a probe.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { TeardownRequest, TeardownResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import { isAllowedInterface } from "../config.js";
import type { Lock } from "../handlers.js";
import { destroyInterface } from "../mesh/device.js";
import { planRules } from "../mesh/diff.js";
import { routeLine } from "../os/ip.js";
import { removeStrayStunSnat, stunTable } from "../os/stun.js";
import type { MeshDeps } from "./apply-mesh.js";
import { teardownRoutes } from "./apply-routes.js";

// `purge` changes nothing here: privhelper keeps no files; purging data is the agent's job.
export function makeTeardown(deps: MeshDeps, locks: Record<"mesh" | "firewall" | "stun", Lock>) {
  return (_req: TeardownRequest, ctx: CallContext): Promise<MessageInitShape<typeof TeardownResponseSchema>> =>
    locks.mesh(() =>
      locks.firewall(() =>
        locks.stun(async () => {
          const removed: string[] = [];
          const errors: string[] = [];
          // Each step on its own: one failing never keeps the others from running.
          const attempt = (what: string, fn: () => Promise<unknown>) => fn().catch((err: unknown) => errors.push(`${what}: ${PlexdError.from(err).message}`));
          const names = new Set(deps.config.allowedInterfaces);
          await attempt("list links", async () => {
            for (const l of await deps.ip.links()) if (isAllowedInterface(deps.config, l)) names.add(l);
          });
          for (const name of names) await attempt(name, async () => removed.push(...(await destroyInterface(deps, name))));
          // Routes die with their device; any left (a device plexd no longer names) go here.
          await attempt("routes", async () => {
            const left = (await deps.ip.read("lo")).routes.filter((r) => r.plexd);
            await deps.ip.batch(left.map((r) => routeLine("del", r.dst, r.dev, deps.config.fullTunnelTable)));
            removed.push(...left.map((r) => `route ${r.dst} dev ${r.dev}`));
          });
          // Bridge routes exist only where the config says mode: bridge (ApplyRoutes with mesh-only names adds none).
          if (deps.config.bridge) await attempt("bridge routes", async () => removed.push(...(await teardownRoutes(deps))));
          await attempt("rules", async () => {
            const rules = await deps.ip.rules();
            for (const f of [4, 6] as const) await deps.ip.batch(planRules({ peers: [] }, rules)[f], f);
            removed.push(...rules.map((r) => `rule -${r.family} ${r.rule}`));
          });
          if (await deps.host.which("nft")) {
            await attempt("table inet plexd", async () => {
              if ((await deps.runner.run("nft", ["list", "table", "inet", "plexd"], { allowFailure: true })).exitCode !== 0) return;
              await deps.runner.run("nft", ["delete", "table", "inet", "plexd"]);
              removed.push("table inet plexd");
            });
            await attempt(`table ip ${stunTable}`, async () => (await removeStrayStunSnat(deps.runner)) && removed.push(`table ip ${stunTable}`));
          }
          deps.log.info({ uid: ctx.uid, pid: ctx.pid, removed, errors }, "teardown");
          return { removed, errors };
        }),
      ),
    );
}
