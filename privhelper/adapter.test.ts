import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrivHelperService, type GetInfoResponse } from "../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../proto/lib/errors.js";
import { grpcServiceDefinition } from "../proto/lib/grpc.js";
import { bindHandlers } from "./adapter.js";
import { createLogger } from "./log.js";

const lines: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
    cb();
  },
});
const log = createLogger("debug", sink);
const def = grpcServiceDefinition(PrivHelperService);
let dir: string;
let server: grpc.Server;
let client: grpc.Client;
let seenAbort: Promise<unknown>;
let resolveAbort: (v: unknown) => void;

function metadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("plexd-caller", "test-agent[1]");
  return md;
}

function unary(name: string, req: unknown, timeoutMs = 5_000): Promise<unknown> {
  const m = def[name]!;
  const input = PrivHelperService.methods.find((x) => x.localName === name)!.input;
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, create(input, req as never), metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-adapter-"));
  seenAbort = new Promise((r) => (resolveAbort = r));
  server = new grpc.Server();
  server.addService(
    def,
    bindHandlers(
      PrivHelperService,
      {
        getInfo: () => Promise.resolve({ version: "9.9.9", pid: 7, allowedInterfaces: ["plexd0"] }),
        applyMesh: (req) => {
          if (req.spec?.interface !== "plexd0") return Promise.reject(new PlexdError("invalid_argument", "interface not allowed"));
          return Promise.resolve({ result: { changed: true } });
        },
        readMesh: (_req, { signal }) =>
          new Promise((_resolve, reject) => {
            signal.addEventListener("abort", () => {
              resolveAbort(signal.reason);
              reject(new PlexdError("cancelled", "aborted"));
            });
          }),
        teardown: () => Promise.reject(new Error("boom")),
      },
      log,
    ),
  );
  await new Promise((res, rej) => server.bindAsync(`unix:${join(dir, "s.sock")}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  client = new grpc.Client(`unix:${join(dir, "s.sock")}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client.close();
  server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

describe("bindHandlers", () => {
  it("returns the handler's response as a message", async () => {
    const res = (await unary("getInfo", {})) as GetInfoResponse;
    expect(res.version).toBe("9.9.9");
    expect(res.allowedInterfaces).toEqual(["plexd0"]);
  });

  it("maps PlexdError codes to gRPC status codes and logs the mutation with its outcome", async () => {
    await expect(unary("applyMesh", { spec: { interface: "eth0" } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: "interface not allowed" });
    const ok = (await unary("applyMesh", { spec: { interface: "plexd0" } })) as { result: { changed: boolean } };
    expect(ok.result.changed).toBe(true);
    const logged = lines.filter((l) => l.rpc === "ApplyMesh");
    expect(logged.map((l) => l.outcome)).toEqual(["invalid_argument", "ok"]);
    expect(logged[0]!.level).toBe(40); // warn
    expect(logged[0]!.caller).toMatch(/\(claims test-agent\[1\]\)$/);
  });

  it("maps unknown errors to UNKNOWN and missing handlers to UNIMPLEMENTED", async () => {
    await expect(unary("teardown", {})).rejects.toMatchObject({ code: grpc.status.UNKNOWN });
    await expect(unary("applyFirewall", {})).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
  });

  it("aborts the handler's signal when the caller's deadline passes", async () => {
    await expect(unary("readMesh", {}, 100)).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    const reason = await seenAbort;
    expect(PlexdError.from(reason).code).toBe("cancelled");
  });
});
