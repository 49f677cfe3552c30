#!/bin/sh
# Usage: fuzz/run.sh TARGET [SECONDS]  (from anywhere)
# Fuzzes TARGET on stable Rust (RUSTC_BOOTSTRAP=1), nice'd, one worker, 2 GiB
# RSS limit, 10 s per-input timeout. New inputs go to a scratch corpus
# ($RNATS_FUZZ_SCRATCH, default /tmp/rnats-fuzz/corpus/TARGET), so the
# checked-in corpus/TARGET is only read; crashes go to artifacts/TARGET/.
set -eu
target=$1
seconds=${2:-600}
here=$(cd "$(dirname "$0")" && pwd)
scratch=${RNATS_FUZZ_SCRATCH:-/tmp/rnats-fuzz/corpus}/$target
mkdir -p "$scratch" "$here/artifacts/$target"
cd "$here"
RUSTC_BOOTSTRAP=1 exec nice -n 19 cargo fuzz run -O -a "$target" "$scratch" "corpus/$target" -- \
    -jobs=1 -workers=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$here/artifacts/$target/"
