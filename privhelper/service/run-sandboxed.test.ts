import { describe, expect, it } from "vitest";
import type { RunSandboxedRequest } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { FakeHost, captureLog } from "../../test/support/privhelper.js";
import { TranscriptRunner } from "../../test/support/transcript.js";
import { privConfigFrom } from "../config.js";
import { makeRunSandboxed } from "./run-sandboxed.js";

const ctx = { signal: new AbortController().signal, uid: 0, pid: 77 };
const req = (o: Partial<RunSandboxedRequest>) =>
  ({ path: "/etc/plexd/hooks.d/x", checksum: "sha256:00", user: "nobody", sandbox: "container", writablePaths: [], mountProc: true, allowedDevices: [], env: {}, timeoutMs: 1000, maxOutputBytes: 4096, cpu: 0, memoryBytes: 0n, network: "", capabilities: [], image: "", ...o }) as RunSandboxedRequest;
const runWith = (bins: string[]) => makeRunSandboxed({ config: privConfigFrom({}), runner: new TranscriptRunner([]), host: new FakeHost({ bins }), log: captureLog().log });

describe("RunSandboxed: a sandbox the node cannot provide", () => {
  it("container without crun is sandbox_unavailable, before any file is opened or process run", async () => {
    await expect(runWith(["setpriv", "bwrap"])(req({}), ctx)).rejects.toThrow("sandbox_unavailable: the container sandbox needs crun (an OCI runtime), which is not installed");
  });

  it("container with an image is sandbox_unavailable: only the host's root file system is supported", async () => {
    await expect(runWith(["setpriv", "bwrap", "crun"])(req({ image: "docker.io/library/alpine" }), ctx)).rejects.toThrow(/^sandbox_unavailable: container images are not supported/);
  });

  it("namespaced without bubblewrap, and anything without setpriv, is sandbox_unavailable", async () => {
    await expect(runWith(["setpriv"])(req({ sandbox: "namespaced" }), ctx)).rejects.toThrow("sandbox_unavailable: bwrap (bubblewrap) is not installed");
    await expect(runWith(["bwrap"])(req({ sandbox: "none" }), ctx)).rejects.toThrow("sandbox_unavailable: setpriv is not installed");
  });

  it("refuses a network other than none or host, and capability names that are not ones", async () => {
    await expect(runWith(["setpriv", "crun"])(req({ network: "bridge" }), ctx)).rejects.toThrow('network must be none or host, not "bridge"');
    await expect(runWith(["setpriv", "crun"])(req({ capabilities: ["net_admin; rm -rf /"] }), ctx)).rejects.toThrow(/not a capability name/);
  });
});
