// ApplyMesh: read live (sent first, validated meanwhile) → diff → apply in order → on failure
// roll back to what was read (design.md 2: atomic or nothing, and say which step failed).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { setImmediate } from "node:timers/promises";
import type { ApplyMeshRequest, ApplyMeshResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import { isAllowedInterface, type PrivConfig } from "../config.js";
import type { Lock } from "../lock.js";
import type { Logger } from "../log.js";
import type { AppliedSpecs } from "../mesh/base.js";
import { createInterface, destroyInterface, type DeviceDeps } from "../mesh/device.js";
import { diffMesh, liveAsDesired, type DesiredMesh, type Live, type MeshPlan } from "../mesh/diff.js";
import { kernelPrefixRoutes, type IpTool, type LiveLink } from "../os/ip.js";
import type { WgBackend, WgLiveDevice } from "../os/wg.js";
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

/** A device's two reads, in flight: they ask different processes (ip, wireguard-go or wg). */
interface Reads {
  link: Promise<{ link: LiveLink; routes: string[] | undefined } | undefined>;
  wg: Promise<WgLiveDevice | undefined>;
}

function startReads(deps: Pick<MeshDeps, "ip" | "wgFor">, name: string, signal: AbortSignal | undefined, opts: { routes: boolean; stats?: boolean }): Reads {
  const link = opts.routes ? deps.ip.showWithRoutes(name, signal) : deps.ip.showLink(name, signal).then((l) => (l ? { link: l, routes: undefined } : undefined));
  return { link, wg: deps.wgFor(name).then((b) => b.show(name, signal, { stats: opts.stats ?? false })) };
}

async function settle(reads: Reads): Promise<Live> {
  const [shown, dev] = await Promise.all([reads.link, reads.wg]);
  const wg = shown ? dev : undefined;
  return { link: shown?.link, wg, ...(shown?.routes ? { routes: shown.routes } : {}) };
}

export function readLive(deps: Pick<MeshDeps, "ip" | "wgFor">, name: string, signal?: AbortSignal, opts: { routes: boolean; stats?: boolean } = { routes: true, stats: false }): Promise<Live> {
  return settle(startReads(deps, name, signal, opts));
}

const ignore = (): undefined => undefined;

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

/** `shown`: the link as read with its IPv4 routes; undefined when it is absent or to be recreated. */
async function planRoutes(deps: MeshDeps, want: DesiredMesh, shown: { link: LiveLink; routes: string[] | undefined } | undefined, signal?: AbortSignal): Promise<RoutePlan> {
  // Each read is a process; the mesh is IPv4, so IPv6 routes are read only when some peer
  // has an IPv6 allowed IP (a stale IPv6 route otherwise lasts until the device is recreated).
  const v6 = want.peers.some((p) => p.allowedIps.some((r) => r.includes(":")));
  const read = shown === undefined ? [] : v6 || shown.routes === undefined ? await deps.ip.routes(want.interface, v6, signal) : shown.routes;
  const live = new Set(read);
  // A peer route equal to the prefix route of one of our own addresses is the kernel's to
  // make and remove with that address; the live read leaves such routes out, too.
  const kernels = kernelPrefixRoutes(want.addresses);
  const add: string[] = [];
  // Validation makes allowed IPs unique across the mesh, so when every live route was
  // matched once there is nothing to remove and no set of the wanted ones is needed.
  let matched = 0;
  for (const p of want.peers) {
    for (const r of p.allowedIps) {
      if (live.has(r)) matched++;
      else if (!kernels.has(r)) add.push(r);
    }
  }
  let remove: string[] = [];
  if (matched !== live.size) {
    const wanted = new Set(want.peers.flatMap((p) => p.allowedIps));
    remove = [...live].filter((r) => !wanted.has(r));
  }
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
      // The live read goes out first: wireguard-go takes ~2 ms to answer for 1,000 peers, in
      // which the request is resolved and validated. Only a name on the allow-list is read,
      // and reading changes nothing, so a request that then fails validation applied nothing.
      const asked = req.spec?.interface ?? "";
      const early = isAllowedInterface(deps.config, asked) ? startReads(deps, asked, ctx.signal, { routes: true }) : undefined;
      if (early) {
        early.link.catch(ignore);
        early.wg.catch(ignore);
        await setImmediate(); // the reads' requests leave before validation holds the thread
      }
      let spec: ReturnType<AppliedSpecs["resolve"]>;
      let want: DesiredMesh;
      try {
        spec = deps.applied.resolve(req);
        want = validateMeshSpec(deps.config, spec);
      } catch (err) {
        // Refused: nothing of this request may still be running once it is answered.
        if (early) await Promise.allSettled([early.link, early.wg]);
        throw err;
      }
      const name = want.interface;
      const remember = (): void => {
        if (!req.dryRun) deps.applied.remember(name, req.generation, spec!);
      };
      const t1 = performance.now();
      const reads = early ?? startReads(deps, name, ctx.signal, { routes: true });
      // Routes are planned as soon as they are read, while wireguard-go is still answering.
      const routesPlanned = reads.link.then((shown) => planRoutes(deps, want, req.recreate ? undefined : shown, ctx.signal));
      routesPlanned.catch(ignore);
      const before = await settle(reads);
      const t2 = performance.now();
      if (before.link && !before.wg && !req.recreate) {
        throw new PlexdError("failed_precondition", `${name} exists but is not a WireGuard device (kind ${before.link.kind || "unknown"}); use recreate`);
      }
      let plan = diffMesh(want, req.recreate ? { link: undefined, wg: undefined } : before);
      const routes = await routesPlanned;
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
