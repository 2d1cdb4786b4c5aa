// ApplyRoutes (docs/bridge.md#access-routing): privhelper's bridge routes and per-interface IPv4
// forwarding, made exactly the spec. Routes carry protocol 81, ApplyMesh's 80: each call owns
// its own and never sees the other's. A route whose destination another owner already has
// (the kernel's connected route of the access subnet) is left alone, not duplicated. Forwarding
// privhelper turned on is noted in its runtime directory; only those entries are turned off
// again, so a host that forwarded before plexd keeps doing so. Steps run one at a time; a
// failure undoes the ones done, in reverse, and says which step failed.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ApplyRoutesRequest, ApplyRoutesResponseSchema, RouteSpec } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { parseCidr, type Cidr } from "../../proto/lib/net.js";
import type { CallContext } from "../adapter.js";
import { isRouteInterface, routeInterfacesText } from "../bridge-config.js";
import type { PrivConfig } from "../config.js";
import type { Lock } from "../handlers.js";
import type { Logger } from "../log.js";
import type { Runner } from "../os/run.js";
import { Issues } from "../validate.js";

export const bridgeRouteProtocol = 81;
export const routeLimits = { routes: 1024, forwarding: 64 } as const;

/** `procSys`: /proc/sys (a directory of the same shape in tests); the forwarding record lives in `runDir`. */
export interface RoutesDeps { runner: Runner; config: PrivConfig; log: Logger; runDir: string; procSys?: string }

interface WantRoute { dst: string; dev: string }
export interface DesiredRoutes { routes: WantRoute[]; forwarding: string[] }

/** Every problem at once as INVALID_ARGUMENT; nothing is read or applied before this passes. */
export function validateRouteSpec(cfg: PrivConfig, spec: RouteSpec | undefined): DesiredRoutes {
  const issues = new Issues();
  if (!spec) throw new PlexdError("invalid_argument", "invalid request:\n  spec: required");
  if (spec.routes.length > routeLimits.routes) issues.add("spec.routes", `at most ${routeLimits.routes}`);
  if (spec.forwarding.length > routeLimits.forwarding) issues.add("spec.forwarding", `at most ${routeLimits.forwarding}`);
  issues.throwIfAny();
  const iface = (name: string, at: string) => {
    if (!isRouteInterface(cfg, name)) issues.add(at, `${JSON.stringify(name.slice(0, 40))} is not an interface the bridge may route through (allowed: ${routeInterfacesText(cfg)})`);
  };
  const seen: { c: Cidr; at: string }[] = [];
  const routes = spec.routes.map((r, i) => {
    const at = `spec.routes[${i}]`;
    iface(r.interface, `${at}.interface`);
    const c = parseCidr(r.destination, true);
    if (!c) issues.add(`${at}.destination`, `must be an IPv4 or IPv6 CIDR (got ${JSON.stringify(r.destination.slice(0, 60))})`);
    else if (c.bits === 0) issues.add(`${at}.destination`, `${c.cidr} is a default route: a bridge routes subnets only`);
    else {
      const other = seen.find((s) => s.c.family === c.family && overlaps(s.c, c));
      if (other) issues.add(`${at}.destination`, `${c.cidr} overlaps ${other.c.cidr} (${other.at}): subnets must not overlap`);
      seen.push({ c, at: `${at}.destination` });
    }
    return { dst: c?.cidr ?? "", dev: r.interface };
  });
  spec.forwarding.forEach((f, i) => iface(f, `spec.forwarding[${i}]`));
  issues.throwIfAny();
  return { routes, forwarding: [...new Set(spec.forwarding)].sort() };
}

function overlaps(a: Cidr, b: Cidr): boolean {
  const bits = BigInt(Math.min(a.bits, b.bits));
  const width = a.family === 4 ? 32n : 128n;
  return a.value >> (width - bits) === b.value >> (width - bits);
}

interface LiveRoutes { ours: WantRoute[]; foreign: Set<string> }

async function readRoutes(deps: RoutesDeps, signal?: AbortSignal): Promise<LiveRoutes> {
  const live: LiveRoutes = { ours: [], foreign: new Set() };
  for (const f of [4, 6] as const) {
    const r = await deps.runner.run("ip", ["-N", "-j", `-${f}`, "route", "show", "table", "main"], { allowFailure: true, ...(signal ? { signal } : {}) });
    for (const row of JSON.parse(r.stdout || "[]") as { dst?: string; dev?: string; protocol?: string; type?: string }[]) {
      if (!row.dst || row.dst === "default" || (row.type !== undefined && row.type !== "unicast" && row.type !== "1")) continue;
      const dst = parseCidr(row.dst.includes("/") ? row.dst : `${row.dst}/${f === 4 ? 32 : 128}`, true)?.cidr;
      if (!dst) continue;
      if (row.protocol === String(bridgeRouteProtocol)) live.ours.push({ dst, dev: row.dev ?? "" });
      else live.foreign.add(dst);
    }
  }
  return live;
}

// The record: interfaces whose forwarding privhelper switched on. Root's own file, yet each line
// becomes a path below /proc/sys: interface names only.
const recordFile = (deps: RoutesDeps) => join(deps.runDir, "forwarding");
const readRecord = async (deps: RoutesDeps) => (await readFile(recordFile(deps), "utf8").catch(() => "")).split("\n").filter((l) => /^[A-Za-z0-9_-]{1,15}$/.test(l));
const writeRecord = (deps: RoutesDeps, names: Set<string>) => writeFile(recordFile(deps), [...names].sort().map((n) => `${n}\n`).join(""), { mode: 0o600 });
const sysctlPath = (deps: RoutesDeps, dev: string) => join(deps.procSys ?? "/proc/sys", "net/ipv4/conf", dev, "forwarding");
/** undefined: the interface does not exist. */
async function forwardingOf(deps: RoutesDeps, dev: string): Promise<boolean | undefined> {
  const text = await readFile(sysctlPath(deps, dev), "utf8").catch(() => undefined);
  return text === undefined ? undefined : text.trim() === "1";
}

interface Action { kind: string; detail: string; run(): Promise<unknown>; undo(): Promise<unknown> }

async function plan(deps: RoutesDeps, want: DesiredRoutes, signal?: AbortSignal): Promise<Action[]> {
  const live = await readRoutes(deps, signal);
  const key = (r: WantRoute) => `${r.dst} dev ${r.dev}`;
  const [have, wanted] = [new Set(live.ours.map(key)), new Set(want.routes.map(key))];
  const ip = (verb: "add" | "del", r: WantRoute) => () => deps.runner.run("ip", ["route", verb, r.dst, "dev", r.dev, "proto", String(bridgeRouteProtocol), "scope", "link"]);
  const actions: Action[] = [];
  // Stale routes first: a destination moving to another interface is removed, then added.
  for (const r of live.ours) if (!wanted.has(key(r))) actions.push({ kind: "remove_route", detail: key(r), run: ip("del", r), undo: ip("add", r) });
  for (const r of want.routes) if (!have.has(key(r)) && !live.foreign.has(r.dst)) actions.push({ kind: "add_route", detail: key(r), run: ip("add", r), undo: ip("del", r) });
  const record = new Set(await readRecord(deps));
  // Switches forwarding on `dev` (where it exists) and keeps the record in step.
  const set = (dev: string, on: boolean, touch: boolean) => async () => {
    if (touch) await writeFile(sysctlPath(deps, dev), on ? "1\n" : "0\n");
    if (on) record.add(dev);
    else record.delete(dev);
    await writeRecord(deps, record);
  };
  for (const dev of want.forwarding) {
    const on = await forwardingOf(deps, dev);
    if (on === undefined) throw new PlexdError("failed_precondition", `interface ${dev} does not exist (forwarding)`);
    if (!on) actions.push({ kind: "forwarding_on", detail: dev, run: set(dev, true, true), undo: set(dev, false, true) });
  }
  for (const dev of record) {
    // Gone with its interface: only the record is left to clear.
    const exists = (await forwardingOf(deps, dev)) !== undefined;
    if (!want.forwarding.includes(dev)) actions.push({ kind: "forwarding_off", detail: dev, run: set(dev, false, exists), undo: set(dev, true, exists) });
  }
  return actions;
}

export function makeApplyRoutes(deps: RoutesDeps, lock: Lock) {
  return async (req: ApplyRoutesRequest, ctx: CallContext): Promise<MessageInitShape<typeof ApplyRoutesResponseSchema>> => {
    const want = validateRouteSpec(deps.config, req.spec);
    return lock(async () => {
      const actions = await plan(deps, want, ctx.signal);
      const steps = actions.map(({ kind, detail }) => ({ kind, detail }));
      if (req.dryRun || actions.length === 0) return { result: { changed: false, plan: steps } };
      const done: Action[] = [];
      for (const a of actions) {
        try {
          await a.run();
          done.push(a);
        } catch (err) {
          const e = PlexdError.from(err);
          const undoErrors: string[] = [];
          for (const d of done.reverse()) await d.undo().catch((u: unknown) => undoErrors.push(`${d.kind} ${d.detail}: ${PlexdError.from(u).message}`));
          deps.log.warn({ uid: ctx.uid, pid: ctx.pid, step: `${a.kind} ${a.detail}`, error: e.message, undo_errors: undoErrors }, "routes apply failed");
          return { result: { changed: false, plan: steps, failedStep: `${a.kind} ${a.detail}`, rolledBack: undoErrors.length === 0, error: [e.message, ...undoErrors].join("; ") } };
        }
      }
      deps.log.info({ uid: ctx.uid, pid: ctx.pid, steps: steps.map((s) => `${s.kind} ${s.detail}`) }, "routes applied");
      return { result: { changed: true, plan: steps } };
    });
  };
}

/** Teardown's part: every protocol-81 route and the forwarding privhelper turned on. */
export async function teardownRoutes(deps: RoutesDeps): Promise<string[]> {
  const removed: string[] = [];
  for (const a of await plan(deps, { routes: [], forwarding: [] })) {
    await a.run();
    removed.push(`${a.kind === "remove_route" ? "route" : "forwarding"} ${a.detail}`);
  }
  return removed;
}
