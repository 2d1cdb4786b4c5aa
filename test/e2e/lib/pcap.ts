// Reads a classic pcap file (tcpdump -w) on an Ethernet link and returns the payloads of its
// IPv4 UDP datagrams, so a test can check what crossed a wire.
export function udpPayloads(file: Buffer): Buffer[] {
  if (file.length < 24) return [];
  const magic = file.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && file.readUInt32BE(0) !== 0xa1b2c3d4 && file.readUInt32BE(0) !== 0xa1b23c4d) throw new Error("not a pcap file");
  const u32 = (o: number) => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
  const linkType = u32(20);
  if (linkType !== 1) throw new Error(`pcap link type ${linkType}: only Ethernet (1) is read`);
  const out: Buffer[] = [];
  for (let off = 24; off + 16 <= file.length; ) {
    const capLen = u32(off + 8);
    const frame = file.subarray(off + 16, off + 16 + capLen);
    off += 16 + capLen;
    if (frame.length < 14 + 20 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ip = frame.subarray(14);
    const ihl = (ip[0]! & 0x0f) * 4;
    if (ip[9] !== 17 || ip.length < ihl + 8) continue;
    out.push(ip.subarray(ihl + 8));
  }
  return out;
}
