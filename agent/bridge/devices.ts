// The bridge's own WireGuard devices (user access, site-to-site; docs/bridge.md): one whole-spec
// ApplyMesh per device, and ApplyMesh's remove for every device no longer wanted. The names ever
// applied are recorded in data_dir before a device is made, so one left from before a restart
// (a tunnel revoked while the agent was down) is still found and removed. A device whose apply
// fails is removed too (all or nothing per item): its routes and rules then leave the specs.
import { readFile } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import { ApplyMeshRequestSchema } from "../../proto/gen/plexd/priv/v1/priv_pb.js";
import { PlexdError } from "../../proto/lib/errors.js";
import type { PrivClient } from "../privclient/client.js";
import { writeJsonAtomic } from "../util/atomic.js";
import type { Logger } from "../util/log.js";
import type { BridgeWgInterface } from "./service.js";

export interface BridgeDeviceStatus {
  name: string;
  listenPort: number;
  peers: number;
  /** Why the last apply of this device failed (it was then removed). */
  error?: string;
}

export interface BridgeDevicesDeps {
  priv: Pick<PrivClient, "applyMesh">;
  /** JSON list of the device names applied (data_dir/bridge-devices.json). */
  recordFile: string;
  log: Logger;
  signal: AbortSignal;
}

const deadlineMs = 60_000;

export class BridgeDevices {
  readonly #d: BridgeDevicesDeps;
  #known: Set<string> | undefined;
  #saved = "";
  readonly #status = new Map<string, BridgeDeviceStatus>();

  constructor(d: BridgeDevicesDeps) {
    this.#d = d;
  }

  /** Makes exactly `devices` exist; answers the names that could not be applied. */
  async apply(devices: readonly BridgeWgInterface[]): Promise<Set<string>> {
    const known = await this.#load();
    const wanted = new Set(devices.map((d) => d.name));
    for (const n of wanted) known.add(n);
    await this.#save(known);
    const failed = new Set<string>();
    for (const dev of devices) {
      const error = await this.#applyOne(dev);
      this.#status.set(dev.name, { name: dev.name, listenPort: dev.listenPort, peers: dev.peers.length, ...(error !== undefined ? { error } : {}) });
      if (error !== undefined) failed.add(dev.name);
    }
    for (const name of [...known]) {
      if (wanted.has(name) && !failed.has(name)) continue;
      if (await this.#remove(name)) {
        if (!wanted.has(name)) known.delete(name);
        if (!failed.has(name)) this.#status.delete(name);
      }
    }
    await this.#save(known);
    return failed;
  }

  status(): BridgeDeviceStatus[] {
    return [...this.#status.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async #applyOne(dev: BridgeWgInterface): Promise<string | undefined> {
    const spec = {
      interface: dev.name,
      privateKey: dev.privateKey,
      listenPort: dev.listenPort,
      addresses: dev.addresses ?? [],
      peers: dev.peers.map((p) => ({ publicKey: p.publicKey, presharedKey: p.presharedKey ?? "", endpoint: p.endpoint ?? "", allowedIps: p.allowedIps, persistentKeepalive: p.keepaliveSeconds ?? 0 })),
    };
    try {
      const r = (await this.#d.priv.applyMesh(create(ApplyMeshRequestSchema, { spec }), { signal: this.#d.signal, timeoutMs: deadlineMs })).result;
      if (r?.error) return `ApplyMesh failed at ${r.failedStep}: ${r.error}${r.rolledBack ? " (rolled back)" : ""}`;
      if (r?.changed) this.#d.log.info({ interface: dev.name, peers: dev.peers.length, steps: r.plan.map((s) => `${s.kind} ${s.detail}`.trim()) }, "bridge device applied");
      return undefined;
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      this.#d.log.warn({ interface: dev.name, err: e.message }, "bridge device apply failed; it is removed and its routes and rules left out");
      return e.message;
    }
  }

  async #remove(name: string): Promise<boolean> {
    try {
      const r = (await this.#d.priv.applyMesh(create(ApplyMeshRequestSchema, { remove: true, spec: { interface: name } }), { signal: this.#d.signal, timeoutMs: deadlineMs })).result;
      if (r?.changed) this.#d.log.info({ interface: name }, "bridge device removed");
      return true;
    } catch (err) {
      const e = PlexdError.from(err);
      if (e.code === "cancelled") throw e;
      this.#d.log.warn({ interface: name, err: e.message }, "bridge device removal failed; the next sync retries");
      return false;
    }
  }

  async #load(): Promise<Set<string>> {
    if (this.#known) return this.#known;
    const text = await readFile(this.#d.recordFile, "utf8").catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? "[]" : Promise.reject(err)));
    let names: unknown;
    try {
      names = JSON.parse(text);
    } catch {
      names = [];
      this.#d.log.warn({ file: this.#d.recordFile }, "bridge device record unreadable; starting from none (Teardown still removes every bridge device)");
    }
    this.#known = new Set(Array.isArray(names) ? names.filter((n): n is string => typeof n === "string") : []);
    this.#saved = JSON.stringify([...this.#known].sort());
    return this.#known;
  }

  async #save(known: Set<string>): Promise<void> {
    const names = [...known].sort();
    if (JSON.stringify(names) === this.#saved) return;
    await writeJsonAtomic(this.#d.recordFile, names);
    this.#saved = JSON.stringify(names);
  }
}
