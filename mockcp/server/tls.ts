import { isIP } from "node:net";
import forge from "node-forge";

export interface Pem {
  cert: string;
  key: string;
}

function serial(): string {
  // Positive 16-byte serial: leading hex digit below 8 keeps the DER integer non-negative.
  return `0${forge.util.bytesToHex(forge.random.getBytesSync(15))}`;
}

/** A self-signed CA for mockcp's listeners; agents trust it through `control_plane.ca_file`. */
export function generateCa(now = new Date()): Pem {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
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
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
}

/** A server certificate signed by `ca`, valid for every name in `sans` (IPs become IP SANs). */
export function generateServerCert(ca: Pem, sans: string[], now = new Date()): Pem {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(now.getTime() - 3_600_000);
  cert.validity.notAfter = new Date(now.getTime() + 365 * 86_400_000);
  cert.setSubject([{ name: "commonName", value: sans[0] ?? "localhost" }]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [...new Set(sans)].map((s) => (isIP(s) !== 0 ? { type: 7, ip: s } : { type: 2, value: s }));
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
}
