// WatchAudit: kernel audit records from the audit netlink read-only multicast group
// (AUDIT_NLGRP_READLOG, CAP_AUDIT_READ), streamed to the agent as they come. Node has no
// netlink sockets, so `socat` holds one (bound to the group, never sending: audit rules and
// settings are never changed) and writes each received datagram to its stdout. Each datagram is
// one netlink message: a 16-byte header (length, type, flags, seq, pid) and the record text.
// Nothing else of the text is read here; grouping and meaning are the agent's (docs/telemetry.md#audit).
import { spawn } from "node:child_process";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WatchAuditRequest, WatchAuditResponseSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { CallContext } from "../adapter.js";
import type { Host } from "../os/host.js";

type AuditRec = MessageInitShape<typeof WatchAuditResponseSchema>;

// SOCKET-RECV:<AF_NETLINK=16>:<SOCK_RAW=3>:<NETLINK_AUDIT=9>:<sockaddr_nl after the family:
// pad 0000, pid 00000000 (kernel-assigned), groups 01000000 = AUDIT_NLGRP_READLOG (bit 0, LE)>.
// -b: larger than the kernel's biggest record (MAX_AUDIT_MESSAGE_LENGTH 8970), so none is cut.
export const socatArgv = ["socat", "-u", "-b", "65536", "SOCKET-RECV:16:3:9:x00000000000001000000", "STDOUT"];

/** At most this many watchers at once: each holds a socket and a process. */
export const maxWatchers = 2;
const maxMessage = 65_536;

/** Splits socat's byte stream into netlink messages; a length that cannot be right is an error (no way to resync). */
export class NetlinkSplitter {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): AuditRec[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: AuditRec[] = [];
    while (this.#buf.length >= 16) {
      const len = this.#buf.readUInt32LE(0);
      if (len < 16 || len > maxMessage) throw new PlexdError("internal", `audit netlink stream: impossible message length ${len}`);
      if (this.#buf.length < len) break;
      const text = this.#buf.toString("utf8", 16, len).replace(/\0+$/, "");
      const serial = /^audit\(\d+\.\d+:(\d+)\)/.exec(text)?.[1];
      out.push({ type: this.#buf.readUInt16LE(4), serial: serial ? Number(serial) % 2 ** 32 : 0, text });
      this.#buf = this.#buf.subarray(len);
    }
    return out;
  }
}

export interface WatchAuditDeps {
  host: Host;
  /** The reader's argv; tests replace it with one that replays recorded bytes. */
  argv?: readonly string[];
}

export function makeWatchAudit(deps: WatchAuditDeps) {
  let watchers = 0;
  return async (req: WatchAuditRequest, ctx: CallContext, send: (r: AuditRec) => Promise<void>): Promise<void> => {
    if (req.types.length > 64 || req.types.some((t) => t < 1000 || t > 2999)) throw new PlexdError("invalid_argument", "types: at most 64 audit record types, each 1000-2999");
    // The kernel multicasts audit records on the initial network namespace's socket only:
    // elsewhere the bind succeeds and nothing ever arrives, which is worse than saying so.
    const [self, init] = [await deps.host.netns("self"), await initialNetns(deps.host)];
    if (init !== undefined && self !== init) throw new PlexdError("unavailable", "privhelper is not in the host's initial network namespace; the kernel sends audit records only there");
    const argv = deps.argv ?? socatArgv;
    if (!argv[0]!.startsWith("/") && (await deps.host.which(argv[0]!)) === undefined) throw new PlexdError("unavailable", `${argv[0]} is not installed; it holds privhelper's audit netlink socket`);
    if (watchers >= maxWatchers) throw new PlexdError("resource_exhausted", `at most ${maxWatchers} audit watchers at once`);
    watchers++;
    try {
      await pump(argv, new Set(req.types), ctx.signal, send);
    } finally {
      watchers--;
    }
  };
}

/**
 * The initial network namespace, as that of kthreadd (PID 2, a kernel thread: no command
 * line). PID 1's may be unreadable even to root; a PID namespace shows no kernel thread, and
 * then it cannot be told (undefined).
 */
async function initialNetns(host: Host): Promise<string | undefined> {
  if ((await host.processes()).some((p) => p.pid === 2)) return undefined;
  return host.netns(2);
}

function pump(argv: readonly string[], types: ReadonlySet<number>, signal: AbortSignal, send: (r: AuditRec) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
    const splitter = new NetlinkSplitter();
    let sending = Promise.resolve();
    let stderr = "";
    let failure: PlexdError | undefined;
    const stop = (err?: PlexdError) => {
      failure ??= err;
      child.kill("SIGTERM");
    };
    signal.addEventListener("abort", () => stop(new PlexdError("cancelled", "WatchAudit cancelled")), { once: true });
    child.on("error", (e) => stop(new PlexdError("unavailable", `${argv[0]}: ${e.message}`)));
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
    child.stdout.on("data", (chunk: Buffer) => {
      let records: AuditRec[];
      try {
        records = splitter.push(chunk);
      } catch (err) {
        return stop(PlexdError.from(err));
      }
      const wanted = records.filter((r) => types.size === 0 || types.has(r.type!));
      if (wanted.length === 0) return;
      // Back-pressure: a slow caller pauses the reader; the kernel then drops what its socket
      // buffer cannot hold, and socat reports the overrun (ENOBUFS) by exiting.
      child.stdout.pause();
      sending = wanted
        .reduce((p, r) => p.then(() => send(r)), sending)
        .then(
          () => void child.stdout.resume(),
          (err: unknown) => stop(PlexdError.from(err)),
        );
    });
    child.on("close", (code, sig) => {
      void sending.then(() => {
        if (failure) reject(failure);
        // A reader that ends cleanly (a replay) ends the stream; anything else says why in
        // socat's own words (EPERM without CAP_AUDIT_READ, EPROTONOSUPPORT without kernel audit, ENOBUFS on overrun).
        else if (code === 0) resolve();
        else reject(new PlexdError("unavailable", `audit reader ended (${sig ?? `exit ${code}`})${stderr ? `: ${stderr.trim()}` : ""}`));
      });
    });
  });
}
