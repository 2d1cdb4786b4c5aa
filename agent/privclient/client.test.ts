import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetInfoResponseSchema, PrivHelperService } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { grpcServiceDefinition } from "../../proto/lib/grpc.js";
import { connectPrivhelper, probePrivhelper, type PrivClient } from "./client.js";

let dir: string;
let sock: string;
let server: grpc.Server;
let client: PrivClient;
let lastRequestInterface = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "plexd-privclient-"));
  sock = join(dir, "p.sock");
  server = new grpc.Server();
  // A stand-in privhelper speaking the real service definition (the agent may not import privhelper/).
  server.addService(grpcServiceDefinition(PrivHelperService), {
    getInfo: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, create(GetInfoResponseSchema, { version: "1.2.3", allowedInterfaces: ["plexd0"] })),
    applyMesh: (call: grpc.ServerUnaryCall<{ spec?: { interface: string } }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      lastRequestInterface = call.request.spec?.interface ?? "";
      cb({ code: grpc.status.INVALID_ARGUMENT, details: "spec.interface: not allowed" });
    },
    readMesh: () => undefined, // never answers: deadline and abort tests
  });
  await new Promise((res, rej) => server.bindAsync(`unix:${sock}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  client = connectPrivhelper({ socketPath: sock });
});

afterAll(async () => {
  client.close();
  server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

describe("privclient", () => {
  it("calls unary RPCs with typed requests and responses", async () => {
    await client.waitReady({ timeoutMs: 2_000 });
    const info = await client.getInfo();
    expect(info.version).toBe("1.2.3");
    expect(info.allowedInterfaces).toEqual(["plexd0"]);
  });

  it("maps gRPC status codes to PlexdError codes", async () => {
    await expect(client.applyMesh({ spec: { interface: "eth0" } })).rejects.toMatchObject({ name: "PlexdError", code: "invalid_argument", message: "spec.interface: not allowed" });
    expect(lastRequestInterface).toBe("eth0");
  });

  it("applies the per-call deadline and AbortSignal", async () => {
    await expect(client.readMesh({}, { timeoutMs: 100 })).rejects.toMatchObject({ code: "deadline_exceeded" });
    const ac = new AbortController();
    const p = client.readMesh({}, { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(p).rejects.toMatchObject({ code: "cancelled" });
  });

  it("reports unimplemented RPCs and an absent server", async () => {
    await expect(client.teardown({ purge: true })).rejects.toMatchObject({ code: "unimplemented" });
    const gone = connectPrivhelper({ socketPath: join(dir, "absent.sock") });
    await expect(gone.getInfo({}, { timeoutMs: 2_000 })).rejects.toMatchObject({ code: "unavailable" });
    await expect(gone.waitReady({ timeoutMs: 200 })).rejects.toMatchObject({ code: "unavailable" });
    gone.close();
  });

  it("probePrivhelper distinguishes ok, missing and not-a-socket", async () => {
    const ok = await probePrivhelper(sock);
    expect(ok.ok && ok.info.version).toBe("1.2.3");
    expect(await probePrivhelper(join(dir, "absent.sock"))).toMatchObject({ ok: false, code: "unavailable" });
    await writeFile(join(dir, "file"), "");
    expect(await probePrivhelper(join(dir, "file"))).toMatchObject({ ok: false, code: "failed_precondition" });
  });
});
