import { generateKeyPairSync, randomBytes } from "node:crypto";
import { parseIp } from "../../proto/lib/net.js";
import forge from "node-forge";

export interface Pem {
  cert: string;
  key: string;
}

function serial(): string {
  // 16 bytes, first byte 0x01..0x7f: positive and minimally encoded (a leading 0x00, as an
  // odd-length hex string produces, is "illegal padding" to OpenSSL 3).
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString("hex");
}

/**
 * RSA keys from node:crypto rather than forge: forge's PEM occasionally carries
 * non-minimal DER integers that OpenSSL rejects. forge only signs with it.
 */
function rsaKeys(): { publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
  return { publicKey: forge.pki.publicKeyFromPem(publicKey), privateKey: forge.pki.privateKeyFromPem(privateKey), privatePem: privateKey };
}

/** A self-signed CA for mockcp's listeners; agents trust it through `control_plane.ca_file`. */
export function generateCa(now = new Date()): Pem {
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(now.getTime() - 3_600_000);
  cert.validity.notAfter = new Date(now.getTime() + 10 * 365 * 86_400_000);
  const name = [{ name: "commonName", value: "plexd mockcp test CA" }, { name: "organizationName", value: "plexd mockcp" }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keys.privatePem };
}

/** A server certificate signed by `ca`, valid for every name in `sans` (IPs become IP SANs). */
export function generateServerCert(ca: Pem, sans: string[], now = new Date()): Pem {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(now.getTime() - 3_600_000);
  cert.validity.notAfter = new Date(now.getTime() + 365 * 86_400_000);
  cert.setSubject([{ name: "commonName", value: sans[0] ?? "localhost" }]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [...new Set(sans)].map((s) => (parseIp(s) !== undefined ? { type: 7, ip: s } : { type: 2, value: s }));
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keys.privatePem };
}
