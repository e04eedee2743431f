#!/usr/bin/env bash
# Builds the Windows agent as it ships (profile `agent`, stripped) and its
# MSI with wixl (msitools), on Linux: dist/campanile-agent-VERSION-x64.msi.
# Prints both sizes. Installs wixl and msitools on first use (Debian).
#
# Usage, from the workspace root: scripts/msi.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
if ! command -v wixl >/dev/null || ! command -v msiinfo >/dev/null; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wixl msitools
fi
target=x86_64-pc-windows-gnu
bash scripts/cross-check.sh build "$target" -- -p campanile-agent --profile agent --locked
exe="${CARGO_TARGET_DIR:-target/xtarget}/$target/agent/campanile-agent.exe"
[ -f "$exe" ] || { echo "msi: $exe was not built" >&2; exit 1; }
# The profile strips symbols; MinGW's strip also drops what the linker
# left (the COFF symbol table, .comment).
x86_64-w64-mingw32-strip "$exe"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
mkdir -p "$out"
msi="$out/campanile-agent-$version-x64.msi"
wixl -a x64 \
  -D Version="$version" \
  -D AgentExe="$exe" \
  -D ExampleConfig=deploy/windows/agent.toml \
  -o "$msi" deploy/windows/campanile-agent.wxs
# The properties an unattended install sets must be secure, or an install
# elevated from a user's session drops them; wixl cannot say so itself.
secure=$(msiinfo export "$msi" Property | awk -F'\t' '$1 == "SecureCustomProperties" { print $2 }')
msibuild "$msi" -q "UPDATE \`Property\` SET \`Value\` = '${secure:+$secure;}COLLECTOR;TOKEN' WHERE \`Property\` = 'SecureCustomProperties'"
cp "$exe" "$out/campanile-agent-$version-x86_64-windows.exe"
echo "msi: campanile-agent.exe (stripped): $(stat -c %s "$exe") bytes"
echo "msi: $msi: $(stat -c %s "$msi") bytes"
