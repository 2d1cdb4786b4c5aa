#!/bin/sh
# plexd install script (docs/install.md): downloads a plexd release for this machine,
# verifies its SHA-256, and runs `plexd install` from it.
#
#   curl -fsSL https://artifacts.plexsphere.io/plexd/install.sh |
#     sudo PLEXD_BOOTSTRAP_TOKEN=... sh -s -- --api-url https://cp.example.com
#
# Flags: --api-url URL, --token-file PATH, --version V (default latest), --no-start,
# --root DIR (install into a directory tree instead of this system).
# The bootstrap token comes from --token-file or the PLEXD_BOOTSTRAP_TOKEN variable, never
# from an argument (arguments are visible to every user in the process list).
# PLEXD_ARTIFACT_URL is where releases live: <url>/<version>/SHA256SUMS names the tarball of
# each architecture, <url>/<version>/<tarball> is the tarball.
set -eu

usage() {
  cat <<'EOF_USAGE'
usage: install.sh [--api-url URL] [--token-file PATH] [--version V] [--no-start] [--root DIR]
Downloads the plexd release for this machine from $PLEXD_ARTIFACT_URL, verifies its SHA-256
and runs `plexd install`. The bootstrap token comes from --token-file or PLEXD_BOOTSTRAP_TOKEN.
EOF_USAGE
}
say() { printf 'plexd install.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

base=${PLEXD_ARTIFACT_URL:-https://artifacts.plexsphere.io/plexd}
version=latest
root=
api_url=
token_file=
no_start=
while [ $# -gt 0 ]; do
  case $1 in
    --api-url) [ $# -ge 2 ] || die "--api-url needs a value"; api_url=$2; shift 2 ;;
    --token-file) [ $# -ge 2 ] || die "--token-file needs a value"; token_file=$2; shift 2 ;;
    --version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || die "--root needs a value"; root=$2; shift 2 ;;
    --no-start) no_start=1; shift ;;
    --token | --token=*) die "--token is not accepted (the process list would show it): use --token-file PATH or the PLEXD_BOOTSTRAP_TOKEN variable" ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[ "$(uname -s)" = Linux ] || die "plexd runs on Linux only (this is $(uname -s))"
case $(uname -m) in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) die "no plexd release for architecture $(uname -m)" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (it creates the plexd accounts, /etc/plexd and the systemd units)"
command -v curl >/dev/null || die "curl is needed to download the release"
command -v sha256sum >/dev/null || die "sha256sum is needed to verify the release"
command -v node >/dev/null || die "Node.js 20.19 or later is needed (the release runs on the system's node); install it first"
if [ -n "$token_file" ] && [ -n "${PLEXD_BOOTSTRAP_TOKEN:-}" ]; then die "--token-file and PLEXD_BOOTSTRAP_TOKEN: give only one"; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/plexd-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

say "downloading $base/$version/SHA256SUMS"
curl -fsSL --proto '=https,http' -o "$tmp/SHA256SUMS" "$base/$version/SHA256SUMS" || die "cannot download $base/$version/SHA256SUMS"
line=$(grep -E "^[0-9a-f]{64}  plexd-[^/ ]+-linux-$arch\.tar\.gz\$" "$tmp/SHA256SUMS" | head -n 1) || true
[ -n "$line" ] || die "$base/$version/SHA256SUMS lists no tarball for linux-$arch"
want=${line%% *}
tarball=${line#*  }

say "downloading $base/$version/$tarball"
curl -fsSL --proto '=https,http' -o "$tmp/$tarball" "$base/$version/$tarball" || die "cannot download $base/$version/$tarball"
got=$(sha256sum "$tmp/$tarball" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  die "SHA-256 mismatch for $tarball: SHA256SUMS says $want, the download is $got; the file is damaged or altered. Nothing was installed."
fi
say "verified $tarball (sha256 $got)"

mkdir "$tmp/unpacked"
tar -xzf "$tmp/$tarball" -C "$tmp/unpacked" --no-same-owner
plexd=$(ls -d "$tmp"/unpacked/plexd-*/bin/plexd 2>/dev/null | head -n 1)
[ -n "$plexd" ] && [ -e "$plexd" ] || die "$tarball holds no bin/plexd"

set -- install
[ -n "$root" ] && set -- "$@" --root "$root"
[ -n "$api_url" ] && set -- "$@" --api-url "$api_url"
[ -n "$no_start" ] && set -- "$@" --no-start
if [ -n "$token_file" ]; then
  "$plexd" "$@" --token-file "$token_file"
elif [ -n "${PLEXD_BOOTSTRAP_TOKEN:-}" ]; then
  printf '%s\n' "$PLEXD_BOOTSTRAP_TOKEN" | "$plexd" "$@" --token-stdin
else
  "$plexd" "$@"
fi
