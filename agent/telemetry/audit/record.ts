// One kernel audit record as privhelper's WatchAudit streams it ({ type, serial, text }), and
// the reading of its text: the `audit(<sec>.<ms>:<serial>)` header and the key=value fields.

export interface AuditRecord {
  type: number;
  serial: number;
  text: string;
}

/** Record type numbers the agent names itself (linux/audit.h); others read as `UNKNOWN[n]` as ausearch does. */
export const recordTypes: Readonly<Record<number, string>> = {
  1005: "USER", 1100: "USER_AUTH", 1101: "USER_ACCT", 1102: "USER_MGMT", 1103: "CRED_ACQ", 1104: "CRED_DISP",
  1105: "USER_START", 1106: "USER_END", 1107: "USER_AVC", 1108: "USER_CHAUTHTOK", 1109: "USER_ERR",
  1110: "CRED_REFR", 1111: "USYS_CONFIG", 1112: "USER_LOGIN", 1113: "USER_LOGOUT", 1114: "ADD_USER",
  1115: "DEL_USER", 1116: "ADD_GROUP", 1117: "DEL_GROUP", 1123: "USER_CMD", 1124: "USER_TTY",
  1125: "CHUSER_ID", 1126: "CHGRP_ID", 1130: "SERVICE_START", 1131: "SERVICE_STOP",
  1300: "SYSCALL", 1302: "PATH", 1303: "IPC", 1304: "SOCKETCALL", 1305: "CONFIG_CHANGE", 1306: "SOCKADDR",
  1307: "CWD", 1309: "EXECVE", 1317: "FD_PAIR", 1318: "OBJ_PID", 1320: "EOE", 1321: "BPRM_FCAPS",
  1322: "CAPSET", 1323: "MMAP", 1324: "NETFILTER_PKT", 1325: "NETFILTER_CFG", 1326: "SECCOMP",
  1327: "PROCTITLE", 1328: "FEATURE_CHANGE", 1329: "REPLACE", 1330: "KERN_MODULE", 1331: "FANOTIFY",
  1332: "TIME_INJOFFSET", 1333: "TIME_ADJNTPVAL", 1334: "BPF", 1335: "EVENT_LISTENER", 1336: "URINGOP",
  1400: "AVC", 1700: "ANOM_PROMISCUOUS", 1701: "ANOM_ABEND", 1702: "ANOM_LINK", 1703: "ANOM_CREAT",
};

export const EOE = 1320;

export const typeName = (type: number): string => recordTypes[type] ?? `UNKNOWN[${type}]`;

/** `audit(1700000000.123:42): ...` → time in ms and serial; undefined when the header is missing. */
export function parseHeader(text: string): { ms: number; serial: number } | undefined {
  const m = /^audit\((\d+)\.(\d{1,3}):(\d+)\):/.exec(text);
  if (!m) return undefined;
  return { ms: Number(m[1]) * 1000 + Number(m[2]!.padEnd(3, "0")), serial: Number(m[3]) };
}

/**
 * The key=value fields after the header. Values are `"quoted"`, `'quoted'` (the `msg='…'` of
 * user-space records, whose own fields are merged in after the outer ones) or bare. The first
 * occurrence of a key wins.
 */
export function parseFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const body = text.replace(/^audit\([^)]*\):\s*/, "");
  const re = /([A-Za-z0-9_-]+)=("[^"]*"|'[^']*'|\S*)/g;
  const inner: string[] = [];
  for (const m of body.matchAll(re)) {
    const key = m[1]!;
    let value = m[2]!;
    if (value.startsWith("'")) {
      value = value.slice(1, -1);
      if (key === "msg") inner.push(value);
    }
    if (!out.has(key)) out.set(key, value);
  }
  for (const text of inner) for (const [k, v] of parseFields(text)) if (!out.has(k) || k === "msg") out.set(k, v);
  return out;
}

// Fields the kernel writes quoted, or as bare hex when they hold a space, quote or control
// character (audit_log_untrustedstring); numeric fields are never hex.
const untrusted = new Set(["name", "comm", "exe", "cwd", "proctitle", "acct", "cmd", "key", "path", "dir", "hostname", "terminal", "unit"]);

/** A field's value as the kernel meant it: quotes removed, hex of an untrusted string decoded; `(null)` and `?` are absent. */
export function fieldText(key: string, value: string | undefined): string | undefined {
  if (value === undefined || value === "(null)" || value === "?" || value === "") return undefined;
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) return value.slice(1, -1);
  if (untrusted.has(key) && /^(?:[0-9A-Fa-f]{2})+$/.test(value)) return Buffer.from(value, "hex").toString("utf8").replace(/\0/g, " ");
  return value;
}
