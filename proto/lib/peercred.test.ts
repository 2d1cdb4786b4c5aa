import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadPeerCredAddon, nativePeerCredReader } from "./peercred.js";

describe("peer credentials", () => {
  it("reads this process's own uid, gid and pid from an accepted unix connection (or none without the addon)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "plexd-peercred-"));
    const path = join(dir, "s.sock");
    const read = nativePeerCredReader();
    const seen = new Promise<ReturnType<typeof read>>((resolve) => {
      const srv = net.createServer((sock) => {
        resolve(read(sock));
        sock.destroy();
        srv.close();
      });
      srv.listen(path, () => net.connect(path).on("error", () => undefined));
    });
    const cred = await seen;
    await rm(dir, { recursive: true, force: true });
    if (loadPeerCredAddon() === undefined) expect(cred).toBeUndefined();
    else expect(cred).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  });

});
