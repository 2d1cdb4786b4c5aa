// Test certificates: a CA and server certificates signed by it (the same generator mockcp uses
// for its own listeners and for the ingress certificates it hands to bridges).
export { generateCa, generateServerCert, type Pem } from "../../mockcp/server/tls.js";
