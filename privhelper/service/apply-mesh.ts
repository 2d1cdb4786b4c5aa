// ApplyMesh: validate → (under the mesh lock) read live → diff → apply in a crash-safe order
// → on failure roll back to what was read (docs/architecture.md#privhelper: atomic or nothing, say which step).
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ApplyMeshRequest, ApplyMeshResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import { isBridgeWireGuard } from "../bridge-config.js";
import type { PrivConfig } from "../config.js";
import type { Lock } from "../handlers.js";
import type { Logger } from "../log.js";
import { createInterface, destroyInterface, type DeviceDeps } from "../mesh/device.js";
import { diffMesh, liveAsDesired, planRoutes, type DesiredMesh, type Live, type MeshPlan } from "../mesh/diff.js";
import { routeLine } from "../os/ip.js";
import type { WgBackend, WgPeer } from "../os/wg.js";
import { isKey32 } from "../../proto/lib/keys.js";
import { checkUniquePeers, meshLimits as limits } from "../../proto/lib/mesh-peer.js";
import { Issues, validateMeshSpec } from "../validate.js";

export interface MeshDeps extends DeviceDeps { wgFor(iface: string): Promise<WgBackend>; config: PrivConfig; log: Logger; meshLock: Lock }

// Rules are read (and planned) only for the mesh interface with mesh.allow_default_route; left over, they send to an empty table.
const readRules = (deps: Pick<MeshDeps, "ip" | "config">, name: string, signal?: AbortSignal) =>
  deps.config.allowDefaultRoute && name === deps.config.meshInterface ? deps.ip.rules(signal) : Promise.resolve(undefined);

export async function readLive(deps: Pick<MeshDeps, "ip" | "wgFor" | "config">, name: string, signal?: AbortSignal): Promise<Live> {
  const [{ link, routes }, wg, rules] = await Promise.all([deps.ip.read(name, signal), deps.wgFor(name).then((b) => b.show(name, signal)), readRules(deps, name, signal)]);
  return { link, wg: link ? wg : undefined, routes, rules };
}

// In an order where a crash at any point leaves a state the next apply settles: peers are added
// and updated before any is removed, routes follow the peers they serve, removals come last.
async function execute(deps: MeshDeps, want: DesiredMesh, plan: MeshPlan, progress: { step: string }): Promise<void> {
  const name = want.interface;
  const step = async (label: string, fn: () => Promise<unknown>) => {
    progress.step = label;
    await fn();
  };
  if (plan.create) await step("create_interface", async () => deps.log.info({ interface: name, impl: await createInterface(deps, name) }, "interface created"));
  const link = [...(plan.mtu !== undefined ? [`link set ${name} mtu ${plan.mtu}`] : []), ...plan.addAddresses.map((a) => `addr replace ${a} dev ${name}`), ...(plan.up ? [`link set ${name} up`] : [])];
  if (link.length > 0) await step("configure_link", () => deps.ip.batch(link));
  const upsert = plan.upsert;
  if (upsert) await step("set_peers", async () => (await deps.wgFor(name)).apply(name, upsert, want));
  const line = (verb: "add" | "del") => (dst: string) => routeLine(verb, dst, name, deps.config.fullTunnelTable);
  const [adds, dels] = [plan.addRoutes.map(line("add")), plan.removeRoutes.map(line("del"))];
  // Route removals follow peer removals; with no peer leaving, both go in one batch, additions first.
  const leaving = plan.removePeers.length > 0;
  const first = leaving ? adds : [...adds, ...dels];
  if (first.length > 0) await step(leaving || dels.length === 0 ? "add_routes" : "sync_routes", () => deps.ip.batch(first));
  if (leaving) await step("remove_peers", async () => (await deps.wgFor(name)).apply(name, { upsert: [], remove: plan.removePeers }, want));
  if (leaving && dels.length > 0) await step("remove_routes", () => deps.ip.batch(dels));
  // The full tunnel's rules once its routes exist, and gone after them (the device's fwmark keeps its own packets out).
  for (const f of [4, 6] as const) if (plan.rules[f].length > 0) await step("sync_rules", () => deps.ip.batch(plan.rules[f], f));
  if (plan.removeAddresses.length > 0) await step("remove_addresses", () => deps.ip.batch(plan.removeAddresses.map((a) => `addr del ${a} dev ${name}`)));
}

/** Puts the device and privhelper's routes (those in `scope`, if given) back to `before`, or removes a device that did not exist. */
async function rollback(deps: MeshDeps, name: string, before: Live, scope?: ReadonlySet<string>): Promise<void> {
  const previous = liveAsDesired(name, before);
  if (!previous) return destroyInterface(deps, name).then(() => undefined);
  const now = await readLive(deps, name);
  const ours = new Set(before.routes.filter((r) => r.plexd && r.dev === name).map((r) => r.dst));
  const routes = scope ? now.routes.filter((r) => scope.has(r.dst)) : now.routes;
  await execute(deps, previous, { ...diffMesh(previous, now, scope), ...planRoutes(name, ours, routes, new Set()) }, { step: "" });
}

// A delta changes peers and their routes only: merged onto the live peers, it reads and plans just the routes of
// allowed IPs it gives or takes away. The link, and drift elsewhere on the device, are the whole spec's business.
async function readDelta(deps: MeshDeps, want: DesiredMesh, removed: readonly string[], signal: AbortSignal): Promise<{ live: Live; scope: Set<string> }> {
  const wg = await (await deps.wgFor(want.interface)).show(want.interface, signal);
  if (!wg) throw new PlexdError("failed_precondition", `${want.interface} does not exist; send the whole spec`);
  const peers = new Map<string, WgPeer>(wg.peers.map((p) => [p.publicKey, p]));
  const [before, after] = [[...removed, ...want.peers.map((p) => p.publicKey)].flatMap((k) => peers.get(k)?.allowedIps ?? []), want.peers.flatMap((p) => p.allowedIps)];
  const scope = new Set([...before.filter((d) => !after.includes(d)), ...after.filter((d) => !before.includes(d))]);
  for (const k of removed) peers.delete(k);
  for (const p of want.peers) peers.set(p.publicKey, p);
  want.peers = [...peers.values()];
  const issues = new Issues();
  checkUniquePeers(want.peers, issues.add, (i) => `peers[${want.peers[i]?.publicKey ?? i}]`);
  issues.throwIfAny();
  const link = { name: want.interface, kind: "tun", up: true, mtu: want.mtu, addresses: want.addresses };
  const [routes, rules] = await Promise.all([deps.ip.routesTo([...scope], signal), readRules(deps, want.interface, signal)]);
  return { live: { link, wg, routes, rules }, scope };
}

type Response = MessageInitShape<typeof ApplyMeshResponseSchema>;

// A bridge device the agent no longer wants (a revoked tunnel, user access off). The mesh interface goes only with Teardown.
async function removeBridgeDevice(deps: MeshDeps, name: string, ctx: CallContext): Promise<Response> {
  if (!isBridgeWireGuard(deps.config, name)) throw new PlexdError("invalid_argument", `invalid request:\n  spec.interface: ${JSON.stringify(name.slice(0, 40))} is not a user-access or site-to-site interface`);
  const removed = await deps.meshLock(() => destroyInterface(deps, name));
  deps.log.info({ interface: name, uid: ctx.uid, pid: ctx.pid, removed }, "bridge interface removed");
  return { result: { changed: removed.length > 0, plan: removed.map((detail) => ({ kind: "remove_interface", detail })) } };
}

export function makeApplyMesh(deps: MeshDeps) {
  // The generation applied last per interface, which a delta names as its base (refused after a restart or a failure: the caller then sends
  // it whole). Only a number: a delta is resolved against the live device and validated like any spec.
  const applied = new Map<string, bigint>();
  return async (req: ApplyMeshRequest, ctx: CallContext): Promise<Response> => {
    const started = performance.now();
    const delta = req.baseGeneration !== 0n;
    const issues = new Issues();
    if (!delta && req.removedPeerKeys.length > 0) issues.add("removed_peer_keys", "only with base_generation");
    if (req.removedPeerKeys.length > limits.peers) issues.add("removed_peer_keys", `at most ${limits.peers}`);
    req.removedPeerKeys.forEach((k, i) => isKey32(k) || issues.add(`removed_peer_keys[${i}]`, "must be a 32-byte base64 key"));
    if (req.remove && (delta || req.recreate || req.dryRun)) issues.add("remove", "only alone: not with base_generation, recreate or dry_run");
    issues.throwIfAny();
    if (req.remove) return removeBridgeDevice(deps, req.spec?.interface ?? "", ctx).finally(() => applied.delete(req.spec?.interface ?? ""));
    const want = validateMeshSpec(deps.config, req.spec);
    const name = want.interface;
    return deps.meshLock(async () => {
      if (delta && applied.get(name) !== req.baseGeneration) throw new PlexdError("failed_precondition", `base generation ${req.baseGeneration} of ${name} is not the last one applied; send the whole spec`);
      const { live: before, scope } = delta ? await readDelta(deps, want, req.removedPeerKeys, ctx.signal) : { live: await readLive(deps, name, ctx.signal), scope: undefined };
      if (before.link && !before.wg && !req.recreate) throw new PlexdError("failed_precondition", `${name} exists but is not a WireGuard device (kind ${before.link.kind || "unknown"}); use recreate`);
      const recreate = req.recreate && before.link !== undefined;
      const plan = diffMesh(want, recreate ? { link: undefined, wg: undefined, routes: before.routes } : before, scope);
      const steps = [...(recreate ? [{ kind: "recreate_interface", detail: name }] : []), ...plan.steps];
      if (req.dryRun || steps.length === 0) {
        if (!req.dryRun) applied.set(name, req.generation);
        return { result: { changed: false, plan: steps } };
      }
      // The last point where a cancelled call stops anything: from here the apply runs to its
      // end (or rolls back), so a caller that goes away never leaves half a change behind.
      ctx.signal.throwIfAborted();
      const progress = { step: "" };
      try {
        if (recreate) {
          progress.step = "recreate_interface";
          await destroyInterface(deps, name);
        }
        await execute(deps, want, plan, progress);
        applied.set(name, req.generation);
        const ms = Math.round((performance.now() - started) * 10) / 10;
        deps.log.info({ interface: name, uid: ctx.uid, pid: ctx.pid, steps: steps.length, peers: want.peers.length, delta, foreignRoutes: plan.foreignRoutes.slice(0, 20), ms }, "mesh applied");
        return { result: { changed: true, plan: steps } };
      } catch (err) {
        const error = PlexdError.from(err);
        applied.delete(name);
        const rolledBack = await rollback(deps, name, before, scope).then(() => true, (rbErr: unknown) => {
          deps.log.error({ interface: name, step: progress.step, error: PlexdError.from(rbErr).message }, "mesh rollback failed");
          return false;
        });
        deps.log.warn({ interface: name, uid: ctx.uid, pid: ctx.pid, step: progress.step, rolledBack, error: error.message }, "mesh apply failed");
        return { result: { changed: !rolledBack, plan: steps, failedStep: progress.step, rolledBack, error: error.message } };
      }
    });
  };
}
