import type { Socket } from "node:net";

// One listener, two protocols (docs/node-api.md): a cleartext HTTP/2 client with prior
// knowledge opens with the fixed connection preface; anything else is HTTP/1.1. Reading the
// first bytes decides, then they are pushed back and the socket is handed to the matching
// server, so `curl --unix-socket` works plainly and gRPC clients work unchanged.

export const h2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** "h2" once the preface is complete, "h1" at the first mismatching byte, undefined while undecided. */
export function classifyPreface(head: Buffer): "h1" | "h2" | undefined {
  const n = Math.min(head.length, h2Preface.length);
  if (!head.subarray(0, n).equals(h2Preface.subarray(0, n))) return "h1";
  return n === h2Preface.length ? "h2" : undefined;
}

export function sniffProtocol(socket: Socket, onDecided: (proto: "h1" | "h2") => void, timeoutMs = 10_000): void {
  let head = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  const cleanup = (): void => {
    clearTimeout(timer);
    socket.removeListener("data", onData);
    socket.removeListener("close", onClose);
  };
  const onClose = (): void => cleanup();
  const onData = (chunk: Buffer): void => {
    head = Buffer.concat([head, chunk]);
    const proto = classifyPreface(head);
    if (proto === undefined) return;
    cleanup();
    socket.pause();
    socket.unshift(head);
    onDecided(proto);
    // The HTTP/1 parser reads through 'data' events; HTTP/2 takes over the handle and picks
    // up the pushed-back bytes itself. Either way the socket must flow again.
    if (proto === "h1") process.nextTick(() => socket.resume());
  };
  socket.on("data", onData);
  socket.on("close", onClose);
}
