#!/usr/bin/env bash
# `make fuzz`: every fuzz target of fuzz/ for FUZZ_SECS seconds (600 by
# default), FUZZ_JOBS at a time (2), with libFuzzer through cargo-fuzz
# (installed if missing). Each target starts from its seeds in
# fuzz/seeds/<target> (committed) and its corpus in fuzz/corpus/<target>
# (kept between runs, not committed). A crash is written to
# fuzz/artifacts/<target>/ and the run fails; make it a regression test in
# the crate it concerns, then delete it. FUZZ_TARGETS picks targets.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECS:-600}
jobs=${FUZZ_JOBS:-2}
if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes flags only a nightly compiler takes (-Z...);
# RUSTC_BOOTSTRAP lets the stable toolchain take them. No sanitizer: the
# paths fuzzed have no unsafe code of their own, and ASan needs a nightly
# std; a panic, an abort or running out of memory is what is caught.
export RUSTC_BOOTSTRAP=1
fuzz() { cargo fuzz "$1" -s none -O "${@:2}"; }
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
fuzz build
mkdir -p logs
run() {
    local t=$1 max_len=4096
    # A real request with a full inventory is ~30 KB.
    [ "$t" = ingest ] && max_len=262144
    mkdir -p "corpus/$t" "artifacts/$t"
    fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" \
        -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"logs/$t.log" 2>&1 || true
}
echo "fuzzing $(echo "$targets" | wc -w) targets, ${secs} s each, $jobs at a time"
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c "$(declare -f fuzz run); secs=$secs; run {}"
# The request target's scratch stores (named for this run's processes).
rm -rf /dev/shm/campanile-fuzz-* "${TMPDIR:-/tmp}"/campanile-fuzz-*
failed=0
printf '%-16s %14s %10s %8s\n' target executions exec/s crashes
for t in $targets; do
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -1)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-16s %14s %10s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes"
    if [ "$crashes" -gt 0 ] || [ -z "$execs" ]; then
        failed=1
        echo "  see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    fi
done
exit $failed
