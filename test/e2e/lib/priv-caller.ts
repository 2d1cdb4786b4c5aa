// An independent privhelper client for abuse tests: built here from the generated service
// descriptor and @grpc/grpc-js alone (not agent/privclient), so it can send what the agent
// never would — raw bytes, huge messages, calls cancelled at any moment — and it reports the
// bare gRPC status of every call instead of mapping it. Bundled by priv-node.ts into a
// standalone script that other users (and killable child processes) run.
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { PrivHelperService } from "../../../proto/gen/plexd/priv/v1/priv_pb.js";

export const servicePath = `/${PrivHelperService.typeName}`;

/** Every method the generated descriptor holds, so a new RPC is covered without a test change. */
export const privMethods: readonly DescMethod[] = PrivHelperService.methods;

export function methodByName(name: string): DescMethod {
  const m = privMethods.find((x) => x.name === name);
  if (!m) throw new Error(`no method ${name} in ${PrivHelperService.typeName}`);
  return m;
}

/** The request as bytes: a message (built with `create`), or bytes sent as they are. */
export function encodeRequest(method: DescMethod, request: Uint8Array | Record<string, unknown> | undefined): Uint8Array {
  if (request instanceof Uint8Array) return request;
  const input = method.input as DescMessage;
  return toBinary(input, create(input, (request ?? {}) as never));
}

export interface CallOutcome {
  method: string;
  /** gRPC status code; 0 is OK. */
  code: number;
  details: string;
  /** Unary: the decoded response; streaming: undefined. */
  response?: unknown;
  /** Streaming: messages received before the status. */
  messages: number;
  ms: number;
}

export interface CallOptions {
  /** Relative deadline in ms (grpc-timeout), default 30 s. */
  deadlineMs?: number;
  signal?: AbortSignal;
}

export interface CallerOptions {
  /** Raises the client's own send limit (grpc-js refuses to send more than 4 MiB otherwise). */
  maxSendBytes?: number;
  /** A connection of its own, never shared with another PrivCaller to the same socket. */
  ownConnection?: boolean;
}

const passBytes = (value: Uint8Array): Buffer => Buffer.from(value.buffer, value.byteOffset, value.byteLength);

/** One gRPC channel to privhelper's socket. */
export class PrivCaller {
  readonly client: grpc.Client;

  constructor(
    readonly socketPath: string,
    opts: CallerOptions = {},
  ) {
    this.client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.max_send_message_length": opts.maxSendBytes ?? 16 * 1024 * 1024,
      // grpc-js shares one connection between channels with equal options; a local pool
      // keeps this channel's connection apart (a quiet caller beside a noisy one).
      ...(opts.ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {}),
    });
  }

  /** Calls `method` and resolves with its status (never rejects for a gRPC error). */
  call(method: DescMethod, request: Uint8Array | Record<string, unknown> | undefined, opts: CallOptions = {}): Promise<CallOutcome> {
    const bytes = encodeRequest(method, request);
    const output = method.output as DescMessage;
    const path = `${servicePath}/${method.name}`;
    const started = performance.now();
    const deadline = Date.now() + (opts.deadlineMs ?? 30_000);
    const done = (code: number, details: string, extra: { response?: unknown; messages?: number } = {}): CallOutcome => ({
      method: method.name,
      code,
      details,
      messages: extra.messages ?? 0,
      ...(extra.response !== undefined ? { response: extra.response } : {}),
      ms: Math.round(performance.now() - started),
    });
    if (opts.signal?.aborted) return Promise.resolve(done(grpc.status.CANCELLED, "aborted before start"));
    return new Promise((resolve) => {
      if (method.methodKind === "unary") {
        const call = this.client.makeUnaryRequest(
          path,
          passBytes,
          (b: Buffer) => fromBinary(output, b),
          bytes,
          new grpc.Metadata(),
          { deadline },
          (err: grpc.ServiceError | null, res?: MessageShape<DescMessage>) => {
            opts.signal?.removeEventListener("abort", onAbort);
            resolve(err ? done(err.code, err.details) : done(grpc.status.OK, "", { response: res }));
          },
        );
        const onAbort = () => call.cancel();
        opts.signal?.addEventListener("abort", onAbort, { once: true });
      } else {
        // Streams: the request is the one message sent (then the client half closes), the
        // answers are counted.
        const decode = (b: Buffer) => fromBinary(output, b);
        const call =
          method.methodKind === "server_streaming"
            ? this.client.makeServerStreamRequest(path, passBytes, decode, bytes, new grpc.Metadata(), { deadline })
            : this.client.makeBidiStreamRequest(path, passBytes, decode, new grpc.Metadata(), { deadline });
        if (method.methodKind !== "server_streaming") {
          (call as grpc.ClientDuplexStream<Uint8Array, unknown>).write(bytes);
          (call as grpc.ClientDuplexStream<Uint8Array, unknown>).end();
        }
        let messages = 0;
        const onAbort = () => call.cancel();
        opts.signal?.addEventListener("abort", onAbort, { once: true });
        call.on("data", () => messages++);
        call.on("error", () => undefined); // the status event carries the outcome
        call.on("status", (s: grpc.StatusObject) => {
          opts.signal?.removeEventListener("abort", onAbort);
          resolve(done(s.code, s.details, { messages }));
        });
      }
    });
  }

  close(): void {
    this.client.close();
  }
}

/** Status name for messages: 7 → PERMISSION_DENIED. */
export function statusName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? String(code);
}
