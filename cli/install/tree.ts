// Moved to proto/lib/release (privhelper InstallUpgrade installs releases with the same code).
export * from "../../proto/lib/install/tree.js";
