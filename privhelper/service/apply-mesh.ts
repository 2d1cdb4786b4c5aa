// ApplyMesh: validate → read live → diff → apply in order → on failure roll back to what
// was read (design.md 2: atomic or nothing, and say which step failed).
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ApplyMeshRequest, ApplyMeshResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import type { PrivConfig } from "../config.js";
import type { Lock } from "../lock.js";
import type { Logger } from "../log.js";
import type { AppliedSpecs } from "../mesh/base.js";
import { createInterface, destroyInterface, type DeviceDeps } from "../mesh/device.js";
import { diffMesh, liveAsDesired, type DesiredMesh, type Live, type MeshPlan } from "../mesh/diff.js";
import type { IpTool } from "../os/ip.js";
import type { WgBackend } from "../os/wg.js";
import { validateMeshSpec } from "../validate.js";

export interface MeshDeps extends DeviceDeps {
  /** The backend for a device: wireguard-go's UAPI socket when it has one, else `wg`. */
  wgFor(iface: string): Promise<WgBackend>;
  ip: IpTool;
  config: PrivConfig;
  log: Logger;
  lock: Lock;
  /** The last applied peer set per interface, the base of delta requests. */
  applied: AppliedSpecs;
}

export async function readLive(deps: Pick<MeshDeps, "ip" | "wgFor">, name: string, signal?: AbortSignal, opts: { routes: boolean; stats?: boolean } = { routes: true, stats: false }): Promise<Live> {
  // Both reads at once: they ask different processes (ip, wireguard-go or wg).
  const link = opts.routes ? deps.ip.showWithRoutes(name, signal) : deps.ip.showLink(name, signal).then((l) => (l ? { link: l, routes: undefined } : undefined));
  const [shown, dev] = await Promise.all([link, deps.wgFor(name).then((b) => b.show(name, signal, { stats: opts.stats ?? false }))]);
  const wg = shown ? dev : undefined;
  return { link: shown?.link, wg, ...(shown?.routes ? { routes: shown.routes } : {}) };
}

/** Runs a plan; `progress.step` names the step in flight when it throws. */
async function execute(deps: MeshDeps, want: DesiredMesh, plan: MeshPlan, progress: { step: string }, signal?: AbortSignal): Promise<void> {
  const name = want.interface;
  if (plan.create) {
    progress.step = "create_interface";
    const impl = await createInterface(deps, name, signal);
    deps.log.info({ interface: name, impl }, "interface created");
  }
  if (plan.mtu !== undefined) {
    progress.step = "set_mtu";
    await deps.ip.setMtu(name, plan.mtu, signal);
  }
  if (plan.wg) {
    progress.step = "set_wireguard";
    await (await deps.wgFor(name)).apply(name, plan.wg, want, signal);
  }
  for (const a of plan.addAddresses) {
    progress.step = `add_address ${a}`;
    await deps.ip.addrReplace(name, a, signal);
  }
  for (const a of plan.removeAddresses) {
    progress.step = `remove_address ${a}`;
    await deps.ip.addrDel(name, a, signal);
  }
  if (plan.up) {
    progress.step = "link_up";
    await deps.ip.setUp(name, true, signal);
  }
}

/** Puts the interface back to `before` (or removes it when it did not exist). */
async function rollback(deps: MeshDeps, name: string, before: Live): Promise<void> {
  const previous = liveAsDesired(name, before);
  if (!previous) {
    await destroyInterface(deps, name);
    return;
  }
  // Not cancellable: a half-applied device is worse than a late answer. The diff is
  // exact, so applying it restores the previous peer set whatever the forward plan touched.
  const now = await readLive(deps, name);
  await execute(deps, previous, diffMesh(previous, now), { step: "" });
  // And the routes, which the forward plan may have changed in part.
  if (before.routes !== undefined && now.routes !== undefined) {
    const had = new Set(before.routes);
    const has = new Set(now.routes);
    await deps.ip.routeSync(name, [...has].filter((r) => !had.has(r)), [...had].filter((r) => !has.has(r)));
  }
}

type Response = MessageInitShape<typeof ApplyMeshResponseSchema>;

// WireGuard installs no routes (wg-quick does that in userspace): traffic to a peer's
// allowed IPs must be routed into the device, so ApplyMesh keeps exactly one route per
// allowed IP on the interface. Routes die with the device, so only live links are diffed.
interface RoutePlan {
  add: string[];
  remove: string[];
}

async function planRoutes(deps: MeshDeps, want: DesiredMesh, before: Live | undefined, signal?: AbortSignal): Promise<RoutePlan> {
  const wanted = new Set<string>();
  // Each read is a process; the mesh is IPv4, so IPv6 routes are read only when some peer
  // has an IPv6 allowed IP (a stale IPv6 route otherwise lasts until the device is recreated).
  let v6 = false;
  for (const p of want.peers) {
    for (const r of p.allowedIps) {
      wanted.add(r);
      if (!v6 && r.includes(":")) v6 = true;
    }
  }
  const read = before?.link === undefined ? [] : v6 || before.routes === undefined ? await deps.ip.routes(want.interface, v6, signal) : before.routes;
  const live = new Set(read);
  const add: string[] = [];
  for (const r of wanted) if (!live.has(r)) add.push(r);
  const remove = [...live].filter((r) => !wanted.has(r));
  return { add: add.sort(), remove: remove.sort() };
}

async function applyRoutes(deps: MeshDeps, name: string, plan: RoutePlan, progress: { step: string }, signal?: AbortSignal): Promise<void> {
  progress.step = "sync_routes";
  await deps.ip.routeSync(name, plan.remove, plan.add, signal);
}

export function makeApplyMesh(deps: MeshDeps) {
  return async (req: ApplyMeshRequest, ctx: CallContext): Promise<Response> => {
    const t0 = performance.now();
    // Under the lock: a delta must be resolved against the spec applied last, not one racing it.
    return deps.lock(async () => {
      const spec = deps.applied.resolve(req);
      const want = validateMeshSpec(deps.config, spec);
      const name = want.interface;
      const remember = (): void => {
        if (!req.dryRun) deps.applied.remember(name, req.generation, spec!);
      };
      const t1 = performance.now();
      const before = await readLive(deps, name, ctx.signal);
      const t2 = performance.now();
      if (before.link && !before.wg && !req.recreate) {
        throw new PlexdError("failed_precondition", `${name} exists but is not a WireGuard device (kind ${before.link.kind || "unknown"}); use recreate`);
      }
      let plan = diffMesh(want, req.recreate ? { link: undefined, wg: undefined } : before);
      const routes = await planRoutes(deps, want, req.recreate ? undefined : before, ctx.signal);
      const routeSteps = [...routes.remove.map((r) => ({ kind: "remove_route", detail: r })), ...routes.add.map((r) => ({ kind: "add_route", detail: r }))];
      const steps = [...(req.recreate && before.link ? [{ kind: "recreate_interface", detail: name }] : []), ...plan.steps, ...routeSteps];
      if (req.dryRun || steps.length === 0) {
        remember();
        return { result: { changed: steps.length > 0 && !req.dryRun, plan: steps } };
      }

      const progress = { step: "" };
      const t3 = performance.now();
      try {
        if (req.recreate && before.link) {
          progress.step = "recreate_interface";
          await destroyInterface(deps, name, ctx.signal);
          plan = diffMesh(want, { link: undefined, wg: undefined });
        }
        if (plan.create || plan.up || plan.mtu !== undefined || plan.addAddresses.length + plan.removeAddresses.length > 0) {
          await execute(deps, want, plan, progress, ctx.signal);
          await applyRoutes(deps, name, routes, progress, ctx.signal);
        } else {
          // Peers and routes only, on a link that is up: wireguard-go (or wg) and ip work
          // at the same time. Either failing rolls both back below.
          const routeProgress = { step: "" };
          const [wg, rt] = await Promise.allSettled([execute(deps, want, plan, progress, ctx.signal), applyRoutes(deps, name, routes, routeProgress, ctx.signal)]);
          if (wg.status === "rejected") throw wg.reason;
          if (rt.status === "rejected") {
            progress.step = routeProgress.step;
            throw rt.reason;
          }
        }
        // Where the time went, for the operator's journal and the benchmarks.
        const ms = { validate: t1 - t0, read: t2 - t1, plan: t3 - t2, apply: performance.now() - t3 };
        const rounded = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, Math.round(v * 10) / 10]));
        deps.log.info({ interface: name, caller: ctx.caller, steps: steps.length, peers: want.peers.length, delta: req.baseGeneration !== 0n, ms: rounded }, "mesh applied");
        remember();
        return { result: { changed: true, plan: steps } };
      } catch (err) {
        const error = PlexdError.from(err);
        // Whatever the kernel holds now, the next request must state it whole.
        deps.applied.forget(name);
        let rolledBack = false;
        try {
          await rollback(deps, name, before);
          rolledBack = true;
        } catch (rbErr) {
          deps.log.error({ interface: name, step: progress.step, error: PlexdError.from(rbErr).message }, "mesh rollback failed");
        }
        deps.log.warn({ interface: name, caller: ctx.caller, step: progress.step, rolledBack, error: error.message }, "mesh apply failed");
        return { result: { changed: !rolledBack, plan: steps, failedStep: progress.step, rolledBack, error: error.message } };
      }
    });
  };
}
