#!/usr/bin/env bash
# The GPU check, in two halves (the GPU machine has no Rust toolchain and no network):
#
#   scripts/gpu_check.sh build   here: builds the CUDA test binaries (release) into
#                                target/gpu_check/ — name that folder in the device call's
#                                `carry`.
#   scripts/gpu_check.sh run     on the GPU machine: runs every CUDA test on the device
#                                against the reference interpreter (LOOPFORGE_REQUIRE_GPU=1
#                                makes a missing driver a failure, not a skip) and prints a
#                                summary table last. Finishes in well under 8 minutes.
#
# Not yet here (issue 4): the SIMT/tensor-core matmul and conv2d benchmarks against cuBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu_check
case "${1:-run}" in
build)
  rm -rf "$out" && mkdir -p "$out"
  cargo test --release --no-run --test cuda_codegen --test gpu_schedules --message-format=json \
    | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
        print("built", m["target"]["name"])
' "$out"
  ls -l "$out"
  ;;
run)
  [ -d "$out" ] || { echo "no $out: run 'scripts/gpu_check.sh build' first (and carry it)"; exit 2; }
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
  export LOOPFORGE_REQUIRE_NVRTC=1 LOOPFORGE_REQUIRE_GPU=1
  status=0
  summary=""
  for t in "$out"/*; do
    name=$(basename "$t")
    start=$(date +%s)
    if "$t" --test-threads 1 > "/tmp/$name.log" 2>&1; then r=ok; else r=FAILED; status=1; fi
    line=$(grep -E '^test result' "/tmp/$name.log" | tail -1)
    summary+=$(printf '%-16s %-7s %4ss  %s' "$name" "$r" "$(( $(date +%s) - start ))" "$line")$'\n'
    [ "$r" = ok ] || tail -40 "/tmp/$name.log"
  done
  echo "== GPU check summary =="
  printf '%s' "$summary"
  exit $status
  ;;
*)
  echo "usage: $0 build|run"; exit 2 ;;
esac
