// ApplyRoutes against recorded `ip` transcripts and a /proc/sys-shaped directory: the allow-list
// and overlap checks refuse before anything is read, routes of other owners are never touched,
// forwarding privhelper did not turn on is never turned off, and a failed step undoes the others.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApplyRoutesRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import { captureLog } from "../../test/support/privhelper.js";
import { TranscriptRunner, fail, ok, type TranscriptEntry } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { createLock } from "../handlers.js";
import { makeApplyRoutes, teardownRoutes } from "./apply-routes.js";

const bridgeCfg = privConfigFrom({ mode: "bridge", mesh: { interface: "plexd0" }, bridge: { access_interface: "eth1", access: [{ type: "wireguard" }] } });
const ctx = { signal: new AbortController().signal, uid: 1001, pid: 4242 };
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-routes-"));
  for (const dev of ["plexd0", "eth1", "wg-s2s-0a0b0c0d"]) {
    await mkdir(join(dir, "sys/net/ipv4/conf", dev), { recursive: true });
    await writeFile(join(dir, "sys/net/ipv4/conf", dev, "forwarding"), "0\n");
  }
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const fwd = (dev: string) => readFile(join(dir, "sys/net/ipv4/conf", dev, "forwarding"), "utf8").then((t) => t.trim());
const record = () => readFile(join(dir, "forwarding"), "utf8").catch(() => "");
const show = (f: 4 | 6, rows: object[] = []): TranscriptEntry => ({ cmd: ["ip", "-N", "-j", `-${f}`, "route", "show", "table", "main"], result: ok(JSON.stringify(rows)) });
const route = (verb: "add" | "del", dst: string, dev: string, result = ok()): TranscriptEntry => ({ cmd: ["ip", "route", verb, dst, "dev", dev, "proto", "81", "scope", "link"], result });

function setup(transcript: TranscriptEntry[], config = bridgeCfg) {
  const runner = new TranscriptRunner(transcript);
  const { log } = captureLog();
  const deps = { runner, config, log, runDir: dir, procSys: join(dir, "sys") };
  return { runner, deps, apply: makeApplyRoutes(deps, createLock()) };
}
const req = (routes: [string, string][], forwarding: string[] = [], dryRun = false) =>
  create(ApplyRoutesRequestSchema, { spec: { routes: routes.map(([destination, iface]) => ({ destination, interface: iface })), forwarding }, dryRun });

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PlexdError);
  expect((err as PlexdError).code).toBe("invalid_argument");
  return (err as PlexdError).message;
}

describe("ApplyRoutes validation (nothing read, nothing applied)", () => {
  it("refuses default routes, overlaps and names outside the allow-list, each with its key path and reason", async () => {
    const { runner, apply } = setup([]);
    const msg = await refusal(
      apply(req([["0.0.0.0/0", "eth1"], ["192.168.10.0/24", "eth1"], ["192.168.10.128/25", "eth1"], ["::/0", "eth1"], ["10.9.0.0/16", "eth0"], ["nonsense", "eth1"]], ["eth0", "plexd0"]), ctx),
    );
    expect(msg.split("\n").slice(1).map((l) => l.trim())).toEqual([
      "spec.routes[0].destination: 0.0.0.0/0 is a default route: a bridge routes subnets only",
      "spec.routes[2].destination: 192.168.10.128/25 overlaps 192.168.10.0/24 (spec.routes[1].destination): subnets must not overlap",
      "spec.routes[3].destination: ::/0 is a default route: a bridge routes subnets only",
      'spec.routes[4].interface: "eth0" is not an interface the bridge may route through (allowed: plexd0, eth1, wg-access, wg-s2s-*)',
      'spec.routes[5].destination: must be an IPv4 or IPv6 CIDR (got "nonsense")',
      'spec.forwarding[0]: "eth0" is not an interface the bridge may route through (allowed: plexd0, eth1, wg-access, wg-s2s-*)',
    ]);
    expect(runner.ran).toEqual([]);
    expect(await fwd("plexd0")).toBe("0");
  });

  it("the same subnet twice is an overlap; other families never overlap", async () => {
    const { apply } = setup([]);
    expect(await refusal(apply(req([["10.1.0.0/16", "eth1"], ["10.1.0.0/16", "wg-s2s-0a0b0c0d"]]), ctx))).toContain("spec.routes[1].destination: 10.1.0.0/16 overlaps 10.1.0.0/16");
    const { runner, apply: apply2 } = setup([show(4), show(6), route("add", "10.1.0.0/16", "eth1"), route("add", "fd00::/64", "eth1")]);
    expect((await apply2(req([["10.1.0.0/16", "eth1"], ["fd00::/64", "eth1"]]), ctx)).result?.changed).toBe(true);
    expect(runner.done).toBe(true);
  });

  it("outside mode: bridge no interface may be named", async () => {
    const { apply } = setup([], privConfigFrom({ mesh: { interface: "plexd0" }, bridge: { access_interface: "eth1" } }));
    expect(await refusal(apply(req([["10.1.0.0/16", "eth1"]], ["plexd0"]), ctx))).toContain("(allowed: none: routes and forwarding only with mode: bridge in the config)");
  });
});

describe("ApplyRoutes", () => {
  it("adds missing routes, skips a destination another owner routes, turns forwarding on; the same spec again changes nothing", async () => {
    const connected = { dst: "192.168.50.0/24", dev: "eth1", protocol: "2", type: "unicast" };
    const { runner, apply } = setup([show(4, [connected]), show(6), route("add", "172.16.0.0/16", "eth1")]);
    const r = await apply(req([["192.168.50.0/24", "eth1"], ["172.16.0.0/16", "eth1"]], ["plexd0", "eth1"]), ctx);
    expect(r.result?.changed).toBe(true);
    expect(r.result?.plan?.map((s) => `${s.kind} ${s.detail}`)).toEqual(["add_route 172.16.0.0/16 dev eth1", "forwarding_on eth1", "forwarding_on plexd0"]);
    expect(runner.done).toBe(true);
    expect([await fwd("plexd0"), await fwd("eth1"), await fwd("wg-s2s-0a0b0c0d")]).toEqual(["1", "1", "0"]);
    expect(await record()).toBe("eth1\nplexd0\n");

    const ours = { dst: "172.16.0.0/16", dev: "eth1", protocol: "81", type: "unicast" };
    const again = setup([show(4, [connected, ours]), show(6)]);
    const r2 = await again.apply(req([["192.168.50.0/24", "eth1"], ["172.16.0.0/16", "eth1"]], ["plexd0", "eth1"]), ctx);
    expect(r2.result).toMatchObject({ changed: false, plan: [] });
    expect(again.runner.done).toBe(true);
  });

  it("removes only its own stale routes and only the forwarding it turned on", async () => {
    await writeFile(join(dir, "sys/net/ipv4/conf/eth1/forwarding"), "1\n"); // on before plexd
    await writeFile(join(dir, "sys/net/ipv4/conf/plexd0/forwarding"), "1\n");
    await writeFile(join(dir, "forwarding"), "plexd0\n"); // privhelper turned plexd0 on earlier
    const rows = [
      { dst: "10.8.0.0/16", dev: "eth1", protocol: "81" },
      { dst: "10.9.0.0/16", dev: "eth1", protocol: "boot" },
      { dst: "10.100.0.2", dev: "plexd0", protocol: "80" },
    ];
    const { runner, apply } = setup([show(4, rows), show(6), route("del", "10.8.0.0/16", "eth1")]);
    const r = await apply(req([]), ctx);
    expect(r.result?.plan?.map((s) => `${s.kind} ${s.detail}`)).toEqual(["remove_route 10.8.0.0/16 dev eth1", "forwarding_off plexd0"]);
    expect(runner.done).toBe(true);
    expect([await fwd("plexd0"), await fwd("eth1")]).toEqual(["0", "1"]);
    expect(await record()).toBe("");
  });

  it("a failed step undoes the done ones in reverse and names the step", async () => {
    const rows = [{ dst: "10.8.0.0/16", dev: "eth1", protocol: "81" }];
    const { runner, apply } = setup([
      show(4, rows),
      show(6),
      route("del", "10.8.0.0/16", "eth1"),
      route("add", "10.7.0.0/16", "eth1"),
      route("add", "10.6.0.0/16", "wg-s2s-0a0b0c0d", fail("Cannot find device \"wg-s2s-0a0b0c0d\"\n", 1)),
      route("del", "10.7.0.0/16", "eth1"),
      route("add", "10.8.0.0/16", "eth1"),
    ]);
    // The transcript runner reports a non-zero exit as the real runner does: an error unless allowFailure.
    const r = await apply(req([["10.7.0.0/16", "eth1"], ["10.6.0.0/16", "wg-s2s-0a0b0c0d"]], ["eth1"]), ctx);
    expect(r.result).toMatchObject({ changed: false, failedStep: "add_route 10.6.0.0/16 dev wg-s2s-0a0b0c0d", rolledBack: true });
    expect(r.result?.error).toContain("Cannot find device");
    expect(runner.done).toBe(true);
    expect(await fwd("eth1")).toBe("0");
  });

  it("forwarding on a missing interface fails before any change", async () => {
    const { runner, apply } = setup([show(4), show(6)]);
    const err = await apply(req([["10.7.0.0/16", "eth1"]], ["wg-access"]), ctx).then(() => undefined, (e: unknown) => PlexdError.from(e));
    expect(err?.code).toBe("failed_precondition");
    expect(runner.commands).toEqual(["ip -N -j -4 route show table main", "ip -N -j -6 route show table main"]);
  });

  it("dry_run plans without changing anything", async () => {
    const { runner, apply } = setup([show(4), show(6)]);
    const r = await apply(req([["10.7.0.0/16", "eth1"]], ["eth1"], true), ctx);
    expect(r.result).toMatchObject({ changed: false, plan: [{ kind: "add_route" }, { kind: "forwarding_on" }] });
    expect(runner.done).toBe(true);
    expect(await fwd("eth1")).toBe("0");
  });

  it("teardown removes every protocol-81 route and the forwarding it turned on", async () => {
    await writeFile(join(dir, "sys/net/ipv4/conf/eth1/forwarding"), "1\n");
    await writeFile(join(dir, "forwarding"), "eth1\ngone0\n"); // gone0: its interface is gone
    const { runner, deps } = setup([show(4, [{ dst: "10.8.0.0/16", dev: "eth1", protocol: "81" }]), show(6, [{ dst: "fd00:1::/64", dev: "eth1", protocol: "81" }]), route("del", "10.8.0.0/16", "eth1"), route("del", "fd00:1::/64", "eth1")]);
    expect(await teardownRoutes(deps)).toEqual(["route 10.8.0.0/16 dev eth1", "route fd00:1::/64 dev eth1", "forwarding eth1", "forwarding gone0"]);
    expect(runner.done).toBe(true);
    expect([await fwd("eth1"), await record()]).toEqual(["0", ""]);
  });
});
