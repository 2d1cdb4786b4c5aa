// Entry of the bundled caller (see priv-node.ts bundleCaller), run as another user or as a
// child process the test kills mid-call:
//   every SOCKET REQDIR              call every method once (request REQDIR/<Method>.bin if
//                                    present, else empty) and print one JSON report
//   once SOCKET METHOD REQFILE MS    one call with a deadline; prints "started" when the call
//                                    is on its way, then the outcome as JSON
// Requests come from files, never argv: they may hold keys.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { methodByName, privMethods, PrivCaller, type CallOutcome } from "./priv-caller.js";

function identity() {
  return { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.(), groups: process.getgroups?.() };
}

async function every(socket: string, reqDir: string): Promise<void> {
  const caller = new PrivCaller(socket);
  const results: CallOutcome[] = [];
  try {
    for (const m of privMethods) {
      const file = join(reqDir, `${m.name}.bin`);
      const request = existsSync(file) ? new Uint8Array(readFileSync(file)) : undefined;
      const r = await caller.call(m, request, { deadlineMs: 20_000 });
      // Responses may be large or hold bigints; the report needs the status only.
      delete r.response;
      results.push(r);
    }
  } finally {
    caller.close();
  }
  process.stdout.write(JSON.stringify({ ...identity(), results }) + "\n");
}

async function once(socket: string, method: string, reqFile: string, deadlineMs: number): Promise<void> {
  const caller = new PrivCaller(socket);
  const pending = caller.call(methodByName(method), new Uint8Array(readFileSync(reqFile)), { deadlineMs });
  process.stdout.write("started\n");
  const r = await pending;
  delete r.response;
  caller.close();
  process.stdout.write(JSON.stringify({ ...identity(), ...r }) + "\n");
}

const [mode, socket, a, b, c] = process.argv.slice(2);
if (mode === "every" && socket && a) await every(socket, a);
else if (mode === "once" && socket && a && b && c) await once(socket, a, b, Number(c));
else {
  process.stderr.write("usage: every SOCKET REQDIR | once SOCKET METHOD REQFILE DEADLINE_MS\n");
  process.exit(2);
}
