// The agent's client for privhelper (docs/architecture.md#privhelper). One typed promise method per unary RPC,
// derived from the generated descriptors so a new RPC in priv.proto appears here without
// hand-written glue.
//
// Reconnects are grpc-js's: the channel goes IDLE/TRANSIENT_FAILURE when privhelper is
// down and re-dials on the next call (with its own exponential backoff, 1s initial,
// capped at 120s); calls made while it is unreachable fail fast with `unavailable`
// (no wait-for-ready), so the agent's own reconcile backoff (docs/architecture.md) stays in
// charge. `waitReady` is the explicit way to wait for the socket to answer.
import { access, constants, stat } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { PrivHelperService, type GetInfoResponse } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { grpcServiceDefinition } from "../../proto/lib/grpc.js";
import { PlexdError, type ErrorCode } from "../../proto/lib/errors.js";

export const defaultPrivhelperSocket = "/run/plexd-priv/privhelper.sock";
export const defaultDeadlineMs = 10_000;

export interface PrivCallOptions {
  /** Per-call deadline in ms; default 10s for unary calls, none for streams. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

type Methods = (typeof PrivHelperService)["method"];
type UnaryNames = { [K in keyof Methods]: Methods[K]["methodKind"] extends "unary" ? K : never }[keyof Methods];
type StreamNames = { [K in keyof Methods]: Methods[K]["methodKind"] extends "server_streaming" ? K : never }[keyof Methods];

export type PrivClient = {
  [K in UnaryNames]: (req?: MessageInitShape<Methods[K]["input"]>, opts?: PrivCallOptions) => Promise<MessageShape<Methods[K]["output"]>>;
} & {
  /** Server streams: messages until privhelper ends the stream (done) or fails it (throws); breaking out or `signal` cancels the call. */
  [K in StreamNames]: (req?: MessageInitShape<Methods[K]["input"]>, opts?: PrivCallOptions) => AsyncIterable<MessageShape<Methods[K]["output"]>>;
} & {
  /** ApplyMesh with the request already encoded (ApplyMeshRequest bytes, agent/mesh/target.ts). */
  applyMeshEncoded(request: Uint8Array, opts?: PrivCallOptions): Promise<MessageShape<Methods["applyMesh"]["output"]>>;
  /** Resolves once the socket accepts a connection, or rejects (`unavailable`) at the deadline. */
  waitReady(opts?: PrivCallOptions): Promise<void>;
  close(): void;
};

// grpc-js errors carry a numeric status + details; PlexdError.from maps them to codes
// (an aborted call → cancelled, a failed dial → unavailable, a deadline → deadline_exceeded).
const mapError = (err: unknown): PlexdError => PlexdError.from(err);

export function connectPrivhelper(opts: { socketPath?: string; signal?: AbortSignal } = {}): PrivClient {
  const socketPath = opts.socketPath ?? defaultPrivhelperSocket;
  const definition = grpcServiceDefinition(PrivHelperService);
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  });
  opts.signal?.addEventListener("abort", () => client.close(), { once: true });

  const api: Record<string, unknown> = {};
  for (const method of PrivHelperService.methods) {
    const def = definition[method.localName];
    if (!def) continue;
    const input = method.input as DescMessage;
    const build = (req: unknown) => (req instanceof Uint8Array ? req : create(input, (req ?? {}) as never));
    if (method.methodKind === "unary") {
      api[method.localName] = (req: unknown, callOpts: PrivCallOptions = {}) =>
        new Promise((resolve, reject) => {
          if (callOpts.signal?.aborted) {
            reject(new PlexdError("cancelled", `${method.name}: aborted before start`));
            return;
          }
          const deadline = Date.now() + (callOpts.timeoutMs ?? defaultDeadlineMs);
          const call = client.makeUnaryRequest(
            def.path,
            def.requestSerialize,
            def.responseDeserialize,
            build(req),
            new grpc.Metadata(),
            { deadline },
            (err, res) => {
              callOpts.signal?.removeEventListener("abort", onAbort);
              if (err) reject(mapError(err));
              else resolve(res);
            },
          );
          const onAbort = () => call.cancel();
          callOpts.signal?.addEventListener("abort", onAbort, { once: true });
        });
    } else if (method.methodKind === "server_streaming") {
      api[method.localName] = (req: unknown, callOpts: PrivCallOptions = {}) => ({
        async *[Symbol.asyncIterator]() {
          const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, build(req), new grpc.Metadata(), callOpts.timeoutMs ? { deadline: Date.now() + callOpts.timeoutMs } : {});
          const onAbort = () => call.cancel();
          callOpts.signal?.addEventListener("abort", onAbort, { once: true });
          try {
            for await (const msg of call as AsyncIterable<unknown>) yield msg;
          } catch (err) {
            throw mapError(err);
          } finally {
            callOpts.signal?.removeEventListener("abort", onAbort);
            call.cancel();
          }
        },
      });
    }
  }
  api.applyMeshEncoded = api.applyMesh;
  api.waitReady = (callOpts: PrivCallOptions = {}) =>
    new Promise<void>((resolve, reject) => {
      client.waitForReady(Date.now() + (callOpts.timeoutMs ?? defaultDeadlineMs), (err) =>
        err ? reject(new PlexdError("unavailable", `privhelper at ${socketPath} not ready: ${err.message}`, { cause: err })) : resolve(),
      );
    });
  api.close = () => client.close();
  return api as PrivClient;
}

export type ProbeResult = { ok: true; info: GetInfoResponse } | { ok: false; code: ErrorCode; message: string };

/**
 * One-shot health probe for the agent's "privhelper unavailable" condition: never throws,
 * distinguishes a missing socket (privhelper not running) from a refused or failing call.
 */
export async function probePrivhelper(socketPath: string = defaultPrivhelperSocket, timeoutMs = 3_000): Promise<ProbeResult> {
  try {
    const st = await stat(socketPath);
    if (!st.isSocket()) return { ok: false, code: "failed_precondition", message: `${socketPath} is not a socket` };
    // grpc-js folds a refused dial into UNAVAILABLE; checking access first keeps
    // "wrong group" apart from "not running" without parsing error text.
    await access(socketPath, constants.R_OK | constants.W_OK);
  } catch (err) {
    const e = PlexdError.from(err);
    const message = e.code === "not_found" ? `privhelper socket ${socketPath} is missing (privhelper not running?)` : e.message;
    return { ok: false, code: e.code === "not_found" ? "unavailable" : e.code, message };
  }
  const client = connectPrivhelper({ socketPath });
  try {
    const info = await client.getInfo({}, { timeoutMs });
    return { ok: true, info };
  } catch (err) {
    const e = PlexdError.from(err);
    return { ok: false, code: e.code, message: `privhelper at ${socketPath}: ${e.message}` };
  } finally {
    client.close();
  }
}
