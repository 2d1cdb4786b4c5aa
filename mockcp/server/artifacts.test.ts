import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, registerNode, startCp } from "../../test/support/mockcp-testkit.js";

afterEach(cleanup);

describe("GET /v1/artifacts/plexd/{version}/{os}/{arch}", () => {
  it("serves uploaded bytes to authenticated nodes and 404 otherwise", async () => {
    const { client } = await startCp();
    const a = await registerNode(client, "a");
    const bytes = randomBytes(200_000);
    const info = await client.uploadArtifact("1.5.0", "linux", "amd64", bytes);
    expect(info).toMatchObject({ version: "1.5.0", os: "linux", arch: "amd64", size: bytes.length, downloads: 0 });
    expect(info.checksum).toBe(`sha256:${createHash("sha256").update(bytes).digest("hex")}`);

    const r = await client.request("GET", "/v1/artifacts/plexd/1.5.0/linux/amd64", { token: a.identity_token });
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/octet-stream");
    expect(r.bytes.equals(bytes)).toBe(true);
    expect((await client.artifacts())[0]?.downloads).toBe(1);

    expect((await client.request("GET", "/v1/artifacts/plexd/1.5.0/linux/arm64", { token: a.identity_token })).status).toBe(404);
    expect((await client.request("GET", "/v1/artifacts/plexd/9.9.9/linux/amd64", { token: a.identity_token })).status).toBe(404);
    expect((await client.request("GET", "/v1/artifacts/plexd/1.5.0/linux/amd64", { token: "bogus" })).status).toBe(401);
    expect((await client.request("GET", "/v1/artifacts/plexd/1.5.0/linux/amd64")).status).toBe(401);
    expect((await client.request("POST", "/v1/artifacts/plexd/1.5.0/linux/amd64", { token: a.identity_token })).status).toBe(405);

    await client.deleteArtifact("1.5.0", "linux", "amd64");
    expect((await client.request("GET", "/v1/artifacts/plexd/1.5.0/linux/amd64", { token: a.identity_token })).status).toBe(404);
  });
});
