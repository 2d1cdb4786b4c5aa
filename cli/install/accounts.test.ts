import { describe, expect, it } from "vitest";
import { addAccounts, idsFrom, removeAccounts } from "./accounts.js";

const base = {
  passwd: "root:x:0:0:root:/root:/bin/bash\nsystemd-network:x:998:998::/:/usr/sbin/nologin\n",
  group: "root:x:0:\nshadow:x:42:\nsystemd-network:x:998:\n",
  shadow: "root:*:19000:0:99999:7:::\n",
  gshadow: "root:*::\n",
};

describe("accounts in a directory tree", () => {
  it("adds plexd's user and groups with the highest free system ids, user id equal to its group's", () => {
    const out = addAccounts(base);
    expect(out.group).toBe(`${base.group}plexd:x:999:\nplexd-secrets:x:997:\n`);
    expect(out.passwd).toBe(`${base.passwd}plexd:x:999:999:plexd mesh agent:/var/lib/plexd:/usr/sbin/nologin\n`);
    expect(out.shadow).toBe(`${base.shadow}plexd:!::::::\n`);
    expect(out.gshadow).toBe(`${base.gshadow}plexd:!::\nplexd-secrets:!::\n`);
    expect(idsFrom(out)?.plexd).toEqual({ uid: 999, gid: 999 });
  });

  it("changes nothing when they exist, and does not create shadow files the tree lacks", () => {
    const once = addAccounts({ passwd: base.passwd, group: base.group });
    expect(addAccounts(once)).toEqual(once);
    expect(once.shadow).toBeUndefined();
  });

  it("keeps an existing plexd group's id and picks another user id when that one is taken", () => {
    const out = addAccounts({ passwd: "root:x:0:0::/root:/bin/sh\nother:x:500:0::/:/bin/sh", group: "root:x:0:\nplexd:x:500:\n" });
    // 999 went to plexd-secrets (ids stay unique across users and groups).
    expect(out.group).toMatch(/^plexd-secrets:x:999:$/m);
    expect(out.passwd).toMatch(/^plexd:x:998:500:/m);
    expect(out.passwd.startsWith("root:x:0:0::/root:/bin/sh\nother:x:500:0::/:/bin/sh\n")).toBe(true);
  });

  it("removes exactly what it added", () => {
    expect(removeAccounts(addAccounts(base))).toEqual(base);
  });
});
