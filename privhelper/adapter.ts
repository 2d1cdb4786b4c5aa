// The one thin layer between grpc-js and the RPC handlers (design.md 2: handlers are plain
// async functions that can be unit-tested without a socket). It maps PlexdError codes to
// gRPC status codes, turns call cancellation/deadline into an AbortSignal, and logs every
// mutation with caller and outcome.
import type * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { PlexdError, grpcStatusOf, isCancellation } from "../proto/lib/errors.js";
import type { Logger } from "./log.js";

export interface CallContext {
  signal: AbortSignal;
  /**
   * For logs only: grpc-js's peer string (uninformative on a unix socket) plus what the
   * client says it is (`plexd-caller` metadata). Self-asserted — the socket's file mode,
   * not this, is what authenticates the caller.
   */
  caller: string;
}

function callerOf(call: { getPeer(): string; metadata: grpc.Metadata }): string {
  const claim = call.metadata.get("plexd-caller")[0];
  const peer = call.getPeer();
  if (typeof claim !== "string" || claim === "") return peer;
  return `${peer} (claims ${claim.replace(/[^\x20-\x7e]/g, "?").slice(0, 80)})`;
}

type Method = GenServiceMethods[string];
type UnaryHandler<M extends Method> = (req: MessageShape<M["input"]>, ctx: CallContext) => Promise<MessageInitShape<M["output"]>>;
type StreamHandler<M extends Method> = (req: MessageShape<M["input"]>, ctx: CallContext) => AsyncIterable<MessageInitShape<M["output"]>>;

/** Handlers keyed by method localName; a missing one answers UNIMPLEMENTED. */
export type Handlers<S extends GenServiceMethods> = {
  [K in keyof S]?: S[K]["methodKind"] extends "server_streaming" ? StreamHandler<S[K]> : UnaryHandler<S[K]>;
};

// Reads are frequent (drift checks, plexd top) and change nothing: debug level only.
const readOnly = /^(get|read|watch|tail|hash|ping|traceroute|stun)/;

function toStatus(err: unknown): grpc.StatusObject {
  const e = PlexdError.from(err);
  return { code: grpcStatusOf(e.code), details: e.message, metadata: undefined as unknown as grpc.Metadata };
}

export function bindHandlers<S extends GenServiceMethods>(
  service: GenService<S>,
  handlers: Handlers<S>,
  log: Logger,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const name = method.localName;
    const handler = (handlers as Record<string, unknown>)[name];
    const output = method.output as DescMessage;
    const mutation = !readOnly.test(name);
    const record = (caller: string, started: number, err?: unknown) => {
      const fields = { rpc: method.name, caller, ms: Math.round((performance.now() - started) * 10) / 10 };
      if (err === undefined) (mutation ? log.info : log.debug).call(log, { ...fields, outcome: "ok" }, "rpc");
      else if (isCancellation(err)) log.debug({ ...fields, outcome: "cancelled" }, "rpc");
      else {
        const e = PlexdError.from(err);
        (mutation || e.code === "internal" ? log.warn : log.debug).call(log, { ...fields, outcome: e.code, error: e.message }, "rpc");
      }
    };

    if (method.methodKind === "unary") {
      impl[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const started = performance.now();
        const caller = callerOf(call);
        if (typeof handler !== "function") {
          const err = new PlexdError("unimplemented", `${method.name} is not implemented`);
          record(caller, started, err);
          callback(toStatus(err));
          return;
        }
        const ac = new AbortController();
        call.on("cancelled", () => ac.abort(new PlexdError("cancelled", "call cancelled")));
        Promise.resolve()
          .then(() => (handler as UnaryHandler<Method>)(call.request as never, { signal: ac.signal, caller }))
          .then(
            (res) => {
              record(caller, started);
              callback(null, create(output, res as never));
            },
            (err: unknown) => {
              record(caller, started, err);
              callback(toStatus(err));
            },
          );
      };
    } else if (method.methodKind === "server_streaming") {
      impl[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        const started = performance.now();
        const caller = callerOf(call);
        if (typeof handler !== "function") {
          const err = new PlexdError("unimplemented", `${method.name} is not implemented`);
          record(caller, started, err);
          call.emit("error", toStatus(err));
          return;
        }
        const ac = new AbortController();
        call.on("cancelled", () => ac.abort(new PlexdError("cancelled", "call cancelled")));
        void (async () => {
          try {
            for await (const msg of (handler as StreamHandler<Method>)(call.request as never, { signal: ac.signal, caller })) {
              if (ac.signal.aborted) break;
              // Respect back-pressure so a slow reader cannot make privhelper buffer without bound.
              if (!call.write(create(output, msg as never))) await new Promise((r) => call.once("drain", r));
            }
            record(caller, started);
            call.end();
          } catch (err) {
            record(caller, started, err);
            if (!ac.signal.aborted) call.emit("error", toStatus(err));
          }
        })();
      };
    }
  }
  return impl;
}
