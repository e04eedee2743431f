#!/usr/bin/env bash
# Builds Campanile for the machines a territory has besides the centre's
# server: Windows PCs (x86_64-pc-windows-gnu) and Linux routers on ARM and
# MIPS (musl, static). `make cross-check` uses it; so can a developer.
#
# Why it is built this way. The rustup toolchain here carries only the
# x86_64-linux-gnu standard library and cannot download another, so the
# standard library is rebuilt for each target from source (-Zbuild-std),
# with Debian's rustc-web and the std sources packaged for exactly that
# compiler (rust-web-src). RUSTC_BOOTSTRAP=1 lets that stable compiler take
# the -Z flag. C code (ring) is compiled by MinGW for Windows and by zig,
# through cargo-zigbuild, for musl. Built binaries run under Wine and
# qemu-user.
#
# Usage, from the workspace root (cargo arguments after `--`):
#   scripts/cross-check.sh setup [check|run]   install what `check` or also `run`/`test` need (root)
#   scripts/cross-check.sh check [TARGET...] [-- ARGS]   cargo check
#   scripts/cross-check.sh build [TARGET...] [-- ARGS]   cargo build --release
#   scripts/cross-check.sh run    TARGET...  [-- ARGS]   cargo run --release under Wine/qemu
#   scripts/cross-check.sh test   TARGET...  [-- ARGS]   cargo test under Wine/qemu
#   scripts/cross-check.sh targets                       the targets known here
# Environment: CAMPANILE_XTARGET_HOME (tools; default ~/.cache/campanile-xtarget),
# CARGO_TARGET_DIR (default target/xtarget, away from the host's builds).
set -euo pipefail

TOOLS="${CAMPANILE_XTARGET_HOME:-$HOME/.cache/campanile-xtarget}"
ZIG_VENV="$TOOLS/zig-venv"
export WINEPREFIX="${WINEPREFIX:-$TOOLS/wine}"
export WINEDEBUG="${WINEDEBUG:--all}"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

# The default set: Windows PCs, 64- and 32-bit ARM routers, MIPS routers of
# both byte orders. The *-gnu ARM targets are there for boards with glibc.
TARGETS=(
  x86_64-pc-windows-gnu
  aarch64-unknown-linux-musl
  armv7-unknown-linux-musleabihf
  mips-unknown-linux-musl
  mipsel-unknown-linux-musl
  aarch64-unknown-linux-gnu
  armv7-unknown-linux-gnueabihf
)

die() { echo "cross-check: $*" >&2; exit 1; }

apt_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# Debian's compiler must match its std sources exactly, and cargo must run it
# rather than rustup's proxy of the same name.
check_toolchain() {
  [ -x /usr/bin/rustc ] || die "Debian's rustc-web is not installed: run '$0 setup'"
  [ -d /usr/lib/rustlib/src/rust/library/std ] || die "rust-web-src is not installed: run '$0 setup'"
}

setup() {
  local what=${1:-check}
  local pkgs=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 python3-venv
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
  case $what in
    check) ;;
    run) pkgs+=(wine wine64 qemu-user-static) ;;
    *) die "setup takes 'check' or 'run', not '$what'" ;;
  esac
  apt_install "${pkgs[@]}"
  check_toolchain
  if [ ! -x "$ZIG_VENV/bin/cargo-zigbuild" ]; then
    python3 -m venv "$ZIG_VENV"
    "$ZIG_VENV/bin/pip" install -q ziglang cargo-zigbuild
  fi
  [ "$what" = run ] && setup_wine
  echo "cross-check: ready to $what ($(/usr/bin/rustc -V), zig $("$ZIG_VENV/bin/python3" -m ziglang version))"
}

# Rust's std for Windows calls bcryptprimitives!ProcessPrng, which Wine 8
# does not have (every Windows since 8 does). For tests under Wine only, a
# DLL of that name forwards it to RtlGenRandom. Nothing shipped uses it.
setup_wine() {
  local dir="$TOOLS/wine-prng"
  mkdir -p "$dir"
  cat > "$dir/prng.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    for (;;) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
        if (len == 0) return TRUE;
    }
}
C
  x86_64-w64-mingw32-gcc -O2 -shared -o "$dir/bcryptprimitives.dll" "$dir/prng.c" -ladvapi32
  [ -d "$WINEPREFIX/drive_c/windows/system32" ] || wineboot --init >/dev/null 2>&1 || true
  cp "$dir/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
  # Wine 8 plays Windows 7 by default (its registry too); the territory's
  # PCs run 10 and 11.
  wine winecfg /v win10 >/dev/null 2>&1 || true
}

# Exports what cargo needs for every target; cheap, so done for all at once.
toolchain_env() {
  export PATH="$ZIG_VENV/bin:/usr/bin:$PATH"
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/xtarget}"
  local t triple cc
  for t in "${TARGETS[@]}"; do
    triple=$(echo "$t" | tr 'a-z-' 'A-Z_')
    case $t in
      x86_64-pc-windows-gnu) cc=x86_64-w64-mingw32 ;;
      aarch64-unknown-linux-gnu) cc=aarch64-linux-gnu ;;
      armv7-unknown-linux-gnueabihf) cc=arm-linux-gnueabihf ;;
      *) continue ;; # musl: cargo-zigbuild sets the compiler and linker
    esac
    export "CC_${t//-/_}=$cc-gcc" "AR_${t//-/_}=$cc-ar" "CARGO_TARGET_${triple}_LINKER=$cc-gcc"
  done
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
  export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm-static -L /usr/arm-linux-gnueabihf"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static
  export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUNNER=qemu-arm-static
  export CARGO_TARGET_MIPS_UNKNOWN_LINUX_MUSL_RUNNER=qemu-mips-static
  export CARGO_TARGET_MIPSEL_UNKNOWN_LINUX_MUSL_RUNNER=qemu-mipsel-static
}

# One cargo invocation for one target.
cargo_for() {
  local mode=$1 target=$2; shift 2
  local cmd=(cargo "$mode") flags=""
  case $target in
    *-musl*)
      # zig brings the C runtime (crt1.o, libc, libunwind): Rust's own musl
      # objects are not built by -Zbuild-std.
      flags="-C link-self-contained=no"
      # MIPS: a static-pie binary crashes at start under zig's crt and qemu.
      case $target in mips*) flags+=" -C relocation-model=static" ;; esac
      cmd=(cargo-zigbuild "${mode/#build/zigbuild}")
      ;;
  esac
  local release=()
  # `-- --profile agent` builds as the agent ships; otherwise release.
  case $mode in build|run) [[ " $* " == *" --profile "* ]] || release=(--release) ;; esac
  local envs=()
  if [ -n "$flags" ]; then
    # RUSTFLAGS, when set, overrides the per-target variable: extend it instead.
    if [ -n "${RUSTFLAGS:-}" ]; then envs=("RUSTFLAGS=$RUSTFLAGS $flags")
    else envs=("CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_RUSTFLAGS=$flags"); fi
  fi
  local started=$SECONDS
  echo "--- $mode $target"
  if env "${envs[@]}" "${cmd[@]}" -Zbuild-std=std,panic_abort --target "$target" "${release[@]}" "$@"; then
    echo "--- $mode $target: ok ($((SECONDS - started)) s)"
  else
    echo "--- $mode $target: FAILED" >&2
    return 1
  fi
}

main() {
  local mode=${1:-}
  [ $# -gt 0 ] && shift
  case $mode in
    setup) setup "$@"; return ;;
    targets) printf '%s\n' "${TARGETS[@]}"; return ;;
    check|build|run|test) ;;
    *) sed -n '15,22p' "$0" >&2; exit 2 ;;
  esac
  local targets=() args=()
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; args=("$@"); break; fi
    targets+=("$1"); shift
  done
  [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
  check_toolchain
  toolchain_env
  local failed=()
  for t in "${targets[@]}"; do
    cargo_for "$mode" "$t" "${args[@]}" || failed+=("$t")
  done
  [ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
  echo "cross-check: $mode ok for ${targets[*]}"
}

main "$@"
