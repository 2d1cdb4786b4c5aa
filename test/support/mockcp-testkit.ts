import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { MockcpClient, type EventStream } from "../../mockcp/control/client.js";
import { createMockcp, type Mockcp, type MockcpOptions } from "../../mockcp/mockcp.js";
import type { Peer } from "../../mockcp/state/store.js";

/**
 * Shared fixtures for mockcp's in-process tests: start a server, register nodes over the
 * real CP API, open their event streams. Call `cleanup()` from afterEach.
 */
export interface TestNode {
  node_id: string;
  identity_token: string;
  mesh_ip: string;
  node_secret_key: string;
  peers: Peer[];
  public_key: string;
}

const running: Mockcp[] = [];
const streams: EventStream[] = [];

export async function cleanup(): Promise<void> {
  for (const s of streams.splice(0)) s.close();
  await Promise.all(running.splice(0).map((m) => m.stop()));
}

export async function startCp(opts: MockcpOptions = {}): Promise<{ cp: Mockcp; client: MockcpClient }> {
  const cp = createMockcp(opts);
  running.push(cp);
  await cp.start();
  return { cp, client: new MockcpClient({ baseUrl: cp.urls[0] ?? "" }) };
}

export const randomKey = (): string => randomBytes(32).toString("base64");

export async function registerNode(client: MockcpClient, hostname: string): Promise<TestNode> {
  const { token } = await client.createToken();
  const public_key = randomKey();
  const r = await client.request<TestNode>("POST", "/v1/register", { body: { token, public_key, hostname } });
  expect(r.status).toBe(201);
  return { ...r.body, public_key };
}

export async function openStream(client: MockcpClient, n: TestNode): Promise<EventStream> {
  const s = await client.openEvents(n.node_id, n.identity_token);
  streams.push(s);
  await client.waitFor(async () => (await client.getNode(n.node_id)).streams > 0, { what: "stream" });
  return s;
}

export async function nextEvent(s: EventStream, timeoutMs?: number): Promise<{ type: string; id: string; payload: Record<string, unknown> }> {
  const env = JSON.parse((await s.next(timeoutMs)).data) as { event_type: string; event_id: string; payload: Record<string, unknown> };
  return { type: env.event_type, id: env.event_id, payload: env.payload };
}

export function heartbeatBody(n: TestNode): Record<string, unknown> {
  return { node_id: n.node_id, timestamp: new Date().toISOString(), status: "healthy" };
}
