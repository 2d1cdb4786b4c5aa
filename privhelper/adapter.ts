// The one thin layer between grpc-js and the RPC handlers (plain async functions, testable
// without a socket). Every call ends as a gRPC status of its own: no rejection escapes. A
// request is decoded only once let through a bounded gate (one for reads, one for mutations, so
// a flood of applies never delays a status read): a flood holds raw bytes, never decoded specs.
import type * as grpc from "@grpc/grpc-js";
import { create, fromBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { PlexdError, grpcStatusOf, isCancellation } from "../proto/lib/errors.js";
import type { Logger } from "./log.js";

/** `signal` aborts when the caller cancels or its deadline passes; uid/pid are SO_PEERCRED's. */
export interface CallContext { signal: AbortSignal; uid: number; pid: number }

type Handler<M extends GenServiceMethods[string]> = (req: MessageShape<M["input"]>, ctx: CallContext) => Promise<MessageInitShape<M["output"]>>;

/** A server-streaming handler: `send` resolves once the caller can take more (flow control). */
export type StreamHandler<M extends GenServiceMethods[string]> = (req: MessageShape<M["input"]>, ctx: CallContext, send: (msg: MessageInitShape<M["output"]>) => Promise<void>) => Promise<void>;

/** One handler per method: a method without one does not compile. */
export type Handlers<S extends GenServiceMethods> = { [K in keyof S]: S[K]["methodKind"] extends "unary" ? Handler<S[K]> : S[K]["methodKind"] extends "server_streaming" ? StreamHandler<S[K]> : never };

/** Runs at most `concurrency` tasks at once and queues at most `queued` more; a finished task hands its slot to the next in line. */
export function createGate(concurrency: number, queued: number) {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (running < concurrency) running++;
    else if (waiting.length >= queued) throw new PlexdError("resource_exhausted", "privhelper is busy: too many calls in flight; retry later");
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

// Reads are frequent (drift checks, plexd top) and change nothing: debug level only.
const readOnly = /^(get|read|hash|tail)/;
// Hook runs and diagnostics last seconds to minutes: a gate of their own, so they never hold up an apply.
const longRunning = new Set(["runSandboxed", "pingPeers", "traceroute"]);

export function bindHandlers<S extends GenServiceMethods>(
  service: GenService<S>,
  handlers: Handlers<S>,
  opts: { log: Logger; gates: Record<"read" | "write" | "run", ReturnType<typeof createGate>>; callerOf(call: { getPeer(): string }): { uid: number; pid: number } | undefined },
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const handler = (handlers as Record<string, Handler<GenServiceMethods[string]>>)[method.localName]!;
    const mutation = !readOnly.test(method.localName);
    if (method.methodKind === "server_streaming") {
      impl[method.localName] = bindStream(method, handler as unknown as StreamHandler<GenServiceMethods[string]>, opts);
      continue;
    }
    impl[method.localName] = (call: grpc.ServerUnaryCall<Buffer, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const started = performance.now();
      const who = opts.callerOf(call) ?? { uid: -1, pid: -1 };
      const log = (err: unknown): void => {
        const fields = { rpc: method.name, uid: who.uid, pid: who.pid, ms: Math.round((performance.now() - started) * 10) / 10 };
        if (err === undefined) (mutation ? opts.log.info : opts.log.debug).call(opts.log, { ...fields, outcome: "ok" }, "rpc");
        else if (isCancellation(err)) opts.log.debug({ ...fields, outcome: "cancelled" }, "rpc");
        else {
          const e = PlexdError.from(err);
          (mutation || e.code === "internal" ? opts.log.warn : opts.log.debug).call(opts.log, { ...fields, outcome: e.code, error: e.message }, "rpc");
        }
      };
      const ac = new AbortController();
      call.on("cancelled", () => ac.abort(new PlexdError("cancelled", "call cancelled")));
      const run = opts.gates[longRunning.has(method.localName) ? "run" : mutation ? "write" : "read"](async () => {
        ac.signal.throwIfAborted();
        let req: unknown;
        try {
          req = fromBinary(method.input as DescMessage, call.request);
        } catch (err) {
          throw new PlexdError("invalid_argument", `malformed ${method.name} request: ${PlexdError.from(err).message}`);
        }
        return create(method.output as DescMessage, (await handler(req as never, { signal: ac.signal, uid: who.uid, pid: who.pid })) as never);
      });
      run
        .then(
          (res) => {
            log(undefined);
            callback(null, res);
          },
          (err: unknown) => {
            log(err);
            const e = PlexdError.from(err);
            callback({ code: grpcStatusOf(e.code), details: e.message });
          },
        )
        .catch((err: unknown) => opts.log.error({ rpc: method.name, error: PlexdError.from(err).message }, "could not answer a call"));
    };
  }
  return impl;
}

// Watch streams last as long as their caller wants: no gate slot is held (the handler bounds
// how many run at once); the request is decoded, each message encoded, and the end is a status.
function bindStream(method: DescMethod, handler: StreamHandler<GenServiceMethods[string]>, opts: { log: Logger; callerOf(call: { getPeer(): string }): { uid: number; pid: number } | undefined }) {
  return (call: grpc.ServerWritableStream<Buffer, unknown>) => {
    const who = opts.callerOf(call) ?? { uid: -1, pid: -1 };
    const ac = new AbortController();
    call.on("cancelled", () => ac.abort(new PlexdError("cancelled", "call cancelled")));
    const send = (msg: unknown): Promise<void> => {
      if (ac.signal.aborted) return Promise.reject(ac.signal.reason as Error);
      const ok = call.write(create(method.output as DescMessage, msg as never));
      if (ok) return Promise.resolve();
      // A caller that stops reading and then cancels never drains: the abort must end the wait.
      return new Promise((resolve, reject) => {
        const onAbort = () => reject(ac.signal.reason as Error);
        ac.signal.addEventListener("abort", onAbort, { once: true });
        call.once("drain", () => {
          ac.signal.removeEventListener("abort", onAbort);
          resolve();
        });
      });
    };
    const run = async (): Promise<void> => {
      let req: unknown;
      try {
        req = fromBinary(method.input as DescMessage, call.request);
      } catch (err) {
        throw new PlexdError("invalid_argument", `malformed ${method.name} request: ${PlexdError.from(err).message}`);
      }
      opts.log.info({ rpc: method.name, uid: who.uid, pid: who.pid }, "stream opened");
      await handler(req as never, { signal: ac.signal, uid: who.uid, pid: who.pid }, send);
    };
    run().then(
      () => {
        opts.log.info({ rpc: method.name, uid: who.uid, pid: who.pid, outcome: "ok" }, "stream ended");
        call.end();
      },
      (err: unknown) => {
        const e = PlexdError.from(err);
        opts.log[isCancellation(err) ? "debug" : "warn"]({ rpc: method.name, uid: who.uid, pid: who.pid, outcome: e.code, error: e.message }, "stream ended");
        if (!ac.signal.aborted) call.emit("error", { code: grpcStatusOf(e.code), details: e.message });
      },
    );
  };
}
