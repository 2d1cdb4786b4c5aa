// Replaced at release time; the build date comes from the bundler.
export const version = "0.1.0";
export const buildDate = process.env.PLEXD_BUILD_DATE ?? "dev";
