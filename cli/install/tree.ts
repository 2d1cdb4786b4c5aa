// Moved to proto/lib/install (privhelper InstallUpgrade installs releases with the same code).
export * from "../../proto/lib/install/tree.js";
