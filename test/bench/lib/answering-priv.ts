import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { connectPrivhelper, type PrivClient } from "../../../agent/privclient/client.js";
import { PrivHelperService } from "../../../proto/gen/plexd/priv/v1/priv_pb.js";
import { grpcServiceDefinition } from "../../../proto/lib/grpc.js";

// A privhelper that answers every unary call at once with an empty success, over a real
// grpc-js unix socket, in a process of its own: a benchmark then counts the agent's real
// client path (serialisation, framing, the copy into HTTP/2) and nothing of privhelper's
// side. Requests are not even decoded there.

export const serveFlag = "--serve-answering-priv";

/** The child's side: `plexd-bench --serve-answering-priv SOCKET` (test/bench/main.ts). */
export async function serveAnsweringPriv(socketPath: string): Promise<void> {
  const def = grpcServiceDefinition(PrivHelperService, { rawRequests: true });
  const impl: grpc.UntypedServiceImplementation = {};
  for (const m of PrivHelperService.methods) {
    if (!def[m.localName] || m.methodKind !== "unary") continue;
    const answer = create(m.output as DescMessage, m.name.startsWith("Apply") ? ({ result: { changed: true } } as never) : ({} as never));
    impl[m.localName] = (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, answer);
  }
  const server = new grpc.Server({ "grpc.max_receive_message_length": 64 * 1024 * 1024 });
  server.addService(def, impl);
  await new Promise<number>((resolve, reject) => server.bindAsync(`unix:${socketPath}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
  // Ends with its parent: stdin closes when the benchmark exits, however it exits.
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

export interface AnsweringPriv {
  client: PrivClient;
  /** ApplyMesh calls answered so far. */
  applies(): number;
  close(): Promise<void>;
}

export async function startAnsweringPriv(): Promise<AnsweringPriv> {
  const dir = await mkdtemp(join(tmpdir(), "plexd-bench-priv-"));
  const socketPath = join(dir, "priv.sock");
  const child = spawn(process.execPath, [process.argv[1]!, serveFlag, socketPath], { stdio: ["pipe", "ignore", "inherit"] });
  const client = connectPrivhelper({ socketPath });
  let applies = 0;
  const encoded = client.applyMeshEncoded;
  client.applyMeshEncoded = (bytes, opts) => (applies++, encoded(bytes, opts));
  try {
    await client.waitReady({ timeoutMs: 10_000 });
  } catch (err) {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    client,
    applies: () => applies,
    close: async () => {
      client.close();
      const gone = new Promise((r) => child.once("exit", r));
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
      await gone;
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
