// The grpc-js adapter on a real server over a temp unix socket: lazy decoding inside the gate,
// status codes, the caller's identity, cancellation, and the bound on calls in flight.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PrivHelperService, type ApplyMeshResponse, type GetInfoResponse } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { grpcServiceDefinition } from "../proto/lib/grpc.js";
import { captureLog, until } from "../test/support/privhelper.js";
import { bindHandlers, createGate, type CallContext, type Handlers } from "./adapter.js";

type Methods = (typeof PrivHelperService)["method"];
const def = grpcServiceDefinition(PrivHelperService);
const never = () => Promise.reject(new PlexdError("unimplemented", "not in this test"));

/** What each handler does, set per test; `seen` records the calls that reached a handler. */
let impl: Partial<Handlers<Methods>> = {};
const seen: { rpc: string; req: unknown; ctx: CallContext; abortedAtStart: boolean }[] = [];
const handlers = Object.fromEntries(
  PrivHelperService.methods.map((m) => [
    m.localName,
    (req: unknown, ctx: CallContext) => {
      seen.push({ rpc: m.localName, req, ctx, abortedAtStart: ctx.signal.aborted });
      const h = (impl as Record<string, (req: unknown, ctx: CallContext) => Promise<unknown>>)[m.localName];
      return h ? h(req, ctx) : never();
    },
  ]),
) as unknown as Handlers<Methods>;

let caller: { uid: number; pid: number } | undefined = { uid: 1001, pid: 4242 };
const { log, lines } = captureLog();
let dir: string;
let server: grpc.Server;
let client: grpc.Client;

function unary(name: keyof Methods & string, req: unknown, opts: { timeoutMs?: number; raw?: Buffer } = {}): Promise<unknown> {
  const m = def[name]!;
  const input = PrivHelperService.methods.find((x) => x.localName === name)!.input;
  const body = opts.raw ?? create(input, req as never);
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, body, new grpc.Metadata(), { deadline: Date.now() + (opts.timeoutMs ?? 5_000) }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-adapter-"));
  server = new grpc.Server();
  // One call at a time, one more waiting, for reads and for mutations: small enough to fill in a test.
  const gates = { read: createGate(1, 1), write: createGate(1, 1), run: createGate(1, 1) };
  server.addService(grpcServiceDefinition(PrivHelperService, { rawRequests: true }), bindHandlers(PrivHelperService, handlers, { log, gates, callerOf: () => caller }));
  await new Promise((res, rej) => server.bindAsync(`unix:${join(dir, "s.sock")}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  client = new grpc.Client(`unix:${join(dir, "s.sock")}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  impl = {};
  seen.length = 0;
  lines.length = 0;
  caller = { uid: 1001, pid: 4242 };
});
const logged = (rpc: string) => lines.filter((l) => l.msg === "rpc" && l.rpc === rpc);

describe("bindHandlers", () => {
  it("decodes the request, hands the handler the caller's uid and pid, and returns its response as a message", async () => {
    impl.getInfo = () => Promise.resolve({ version: "9.9.9", pid: 7, allowedInterfaces: ["plexd0"] });
    impl.applyMesh = (req) => Promise.resolve({ result: { changed: req.spec?.interface === "plexd0", plan: [{ kind: "add_peer", detail: "k" }] } });
    const info = (await unary("getInfo", {})) as GetInfoResponse;
    expect([info.version, info.pid, info.allowedInterfaces]).toEqual(["9.9.9", 7, ["plexd0"]]);
    const res = (await unary("applyMesh", { spec: { interface: "plexd0", listenPort: 51820 }, generation: 3n })) as ApplyMeshResponse;
    expect(res.result?.changed).toBe(true);
    expect(res.result?.plan).toMatchObject([{ kind: "add_peer", detail: "k" }]);
    const call = seen.find((s) => s.rpc === "applyMesh")!;
    expect(call.req).toMatchObject({ spec: { interface: "plexd0", listenPort: 51820 }, generation: 3n });
    expect(call.ctx).toMatchObject({ uid: 1001, pid: 4242 });
    expect(call.abortedAtStart).toBe(false);
  });

  it("maps PlexdError codes to gRPC status codes, anything else to UNKNOWN", async () => {
    impl.applyMesh = () => Promise.reject(new PlexdError("invalid_argument", "interface not allowed"));
    impl.readMesh = () => Promise.reject(new PlexdError("failed_precondition", "no"));
    impl.teardown = () => Promise.reject(new Error("boom"));
    impl.applyFirewall = () => {
      throw new PlexdError("permission_denied", "thrown, not returned");
    };
    await expect(unary("applyMesh", {})).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: "interface not allowed" });
    await expect(unary("readMesh", {})).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    await expect(unary("teardown", {})).rejects.toMatchObject({ code: grpc.status.UNKNOWN, details: "boom" });
    await expect(unary("applyFirewall", {})).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
  });

  it("logs every call with the kernel-attested uid and pid: mutations at info (warn when they fail), reads at debug", async () => {
    impl.applyMesh = () => Promise.resolve({ result: { changed: false } });
    impl.readMesh = () => Promise.resolve({ exists: false });
    impl.stunProbe = () => Promise.reject(new PlexdError("deadline_exceeded", "no answer"));
    impl.readFirewall = () => Promise.reject(new PlexdError("not_found", "gone"));
    impl.getInfo = () => Promise.reject(new PlexdError("internal", "broken"));
    await unary("applyMesh", {});
    await unary("readMesh", {});
    await unary("stunProbe", {}).catch(() => undefined);
    await unary("readFirewall", {}).catch(() => undefined);
    await unary("getInfo", {}).catch(() => undefined);
    expect(logged("ApplyMesh")).toMatchObject([{ level: 30, uid: 1001, pid: 4242, outcome: "ok" }]);
    expect(logged("ReadMesh")).toMatchObject([{ level: 20, outcome: "ok" }]);
    expect(logged("StunProbe")).toMatchObject([{ level: 40, outcome: "deadline_exceeded", error: "no answer" }]);
    expect(logged("ReadFirewall")).toMatchObject([{ level: 20, outcome: "not_found" }]);
    expect(logged("GetInfo")).toMatchObject([{ level: 40, outcome: "internal" }]);
    expect(typeof logged("ApplyMesh")[0]?.ms).toBe("number");
  });

  it("a connection without a kernel record is uid -1 to the handler and in the log", async () => {
    caller = undefined;
    impl.getInfo = () => Promise.resolve({});
    await unary("getInfo", {});
    expect(seen[0]?.ctx).toMatchObject({ uid: -1, pid: -1 });
    expect(logged("GetInfo")[0]).toMatchObject({ uid: -1, pid: -1 });
  });

  it("malformed request bytes are INVALID_ARGUMENT and never reach a handler", async () => {
    impl.applyMesh = () => Promise.resolve({});
    // field 1 (spec), length 5, one byte of it
    await expect(unary("applyMesh", {}, { raw: Buffer.from([0x0a, 0x05, 0x01]) })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining("malformed ApplyMesh request") });
    await expect(unary("teardown", {}, { raw: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(seen).toEqual([]);
  });

  it("aborts the handler's signal when the caller's deadline passes; logged as cancelled, at debug", async () => {
    let reason: unknown;
    impl.applyMesh = (_req, { signal }) =>
      new Promise((_resolve, reject) =>
        signal.addEventListener("abort", () => {
          reason = signal.reason;
          reject(signal.reason);
        }),
      );
    await expect(unary("applyMesh", {}, { timeoutMs: 100 })).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await tick();
    expect(PlexdError.from(reason).code).toBe("cancelled");
    expect(logged("ApplyMesh")).toMatchObject([{ level: 20, outcome: "cancelled" }]);
  });

  it("RESOURCE_EXHAUSTED beyond the gate's queue; the queued call runs once a slot frees", async () => {
    let release = (): void => undefined;
    impl.readMesh = () => new Promise((r) => (release = () => r({ exists: true })));
    impl.getInfo = () => Promise.resolve({ version: "queued" });
    const first = unary("readMesh", {});
    await until(() => seen.length === 1);
    const queued = unary("getInfo", {});
    await tick(100); // into the gate's queue
    await expect(unary("getInfo", {})).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    expect(seen.map((s) => s.rpc)).toEqual(["readMesh"]);
    release();
    expect(await first).toMatchObject({ exists: true });
    expect(await queued).toMatchObject({ version: "queued" });
  });

  it("reads never wait behind mutations: a status read answers while the mutation gate is full", async () => {
    let release = (): void => undefined;
    impl.applyMesh = () => new Promise((r) => (release = () => r({})));
    impl.applyFirewall = () => Promise.resolve({});
    impl.getInfo = () => Promise.resolve({ version: "read" });
    const apply = unary("applyMesh", {});
    await until(() => seen.length === 1);
    const queued = unary("applyFirewall", {});
    await tick(100); // into the mutation gate's queue
    expect(await unary("getInfo", {})).toMatchObject({ version: "read" });
    expect(seen.map((s) => s.rpc)).toEqual(["applyMesh", "getInfo"]);
    release();
    await apply;
    await queued;
  });

  it("a call whose caller gave up while it waited in the queue never reaches its handler", async () => {
    let release = (): void => undefined;
    impl.readMesh = () => new Promise((r) => (release = () => r({})));
    impl.getInfo = () => Promise.resolve({});
    const first = unary("readMesh", {});
    await until(() => seen.length === 1);
    await expect(unary("getInfo", {}, { timeoutMs: 50 })).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await tick(100); // until the server has seen the deadline too
    release();
    await first;
    await tick(50);
    expect(seen.map((s) => s.rpc)).toEqual(["readMesh"]);
  });
});

describe("createGate", () => {
  it("runs at most `concurrency` tasks, queues `queued` more in order, refuses the rest", async () => {
    const gate = createGate(2, 2);
    const order: string[] = [];
    const releases: (() => void)[] = [];
    const task = (name: string) => () =>
      new Promise<string>((r) => {
        order.push(name);
        releases.push(() => r(name));
      });
    const runs = ["a", "b", "c", "d"].map((n) => gate(task(n)));
    await expect(gate(task("e"))).rejects.toMatchObject({ code: "resource_exhausted" });
    await tick(1);
    expect(order).toEqual(["a", "b"]);
    releases[0]!();
    await tick(1);
    expect(order).toEqual(["a", "b", "c"]);
    releases[1]!();
    releases[2]!();
    await tick(1);
    releases[3]!();
    expect(await Promise.all(runs)).toEqual(["a", "b", "c", "d"]);
  });

  it("a failed task frees its slot", async () => {
    const gate = createGate(1, 0);
    await expect(gate(() => Promise.reject(new Error("x")))).rejects.toThrow("x");
    expect(await gate(() => Promise.resolve(1))).toBe(1);
  });

  // When a task ends, the gate gives up its slot (running--) and wakes the first waiter, which
  // takes the slot back only in a later microtask. A call entering in between sees a free slot
  // and runs at once; then the waiter runs too: two tasks in a gate of one, and each such
  // hand-over can add one more. grpc-js delivers calls from promise callbacks, so a call can
  // enter in the same turn as another call's task ends.
  it("never runs more than `concurrency` tasks, also when a call enters while a slot is handed over", async () => {
    const afterTicks = (n: number, fn: () => void) => {
      let p = Promise.resolve();
      for (let i = 0; i < n; i++) p = p.then(() => undefined);
      void p.then(fn);
    };
    let peak = 0;
    for (let k = 0; k < 6; k++) {
      const gate = createGate(1, 1);
      let running = 0;
      const task = (wait: Promise<unknown>) => async () => {
        peak = Math.max(peak, ++running);
        try {
          await wait;
        } finally {
          running--;
        }
      };
      let releaseA = (): void => undefined;
      const a = gate(task(new Promise<void>((r) => (releaseA = r))));
      const b = gate(task(tick(1)));
      releaseA();
      let c: Promise<void> | undefined;
      afterTicks(k, () => {
        c = gate(task(tick(1))).catch(() => undefined);
      });
      await Promise.all([a, b]);
      await tick(5);
      await c;
    }
    expect(peak).toBe(1);
  });
});
