#!/usr/bin/env bash
# The GPU check, in two halves (the GPU machine has no Rust toolchain and no network):
#
#   scripts/gpu_check.sh build   here: builds the CUDA test binaries and the benchmark
#                                (examples/gpu_bench.rs), release, into target/gpu_check/ —
#                                name that folder in the device call's `carry`.
#   scripts/gpu_check.sh run     on the GPU machine: runs every CUDA test on the device
#                                against the reference interpreter (LOOPFORGE_REQUIRE_GPU=1
#                                makes a missing driver a failure, not a skip), then the
#                                benchmark against cuBLAS, and prints the summary table and
#                                the benchmark table last. Finishes in well under 8 minutes.
#                                Logs go to $OUT (when set) or /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu_check
case "${1:-run}" in
build)
  rm -rf "$out" && mkdir -p "$out"
  { cargo test --release --no-run --test cuda_codegen --test gpu_schedules --test graph_runtime \
      --message-format=json;
    cargo build --release --example gpu_bench --message-format=json; } \
    | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] in (["test"], ["example"]):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
        print("built", m["target"]["name"])
' "$out"
  ls -l "$out"
  ;;
run)
  [ -d "$out" ] || { echo "no $out: run 'scripts/gpu_check.sh build' first (and carry it)"; exit 2; }
  logs=${OUT:-/tmp}
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || true
  # cudarc opens libnvrtc.so / libcublas.so by their plain names (or .so.12): link the
  # CUDA toolkit's or the pip wheels' libraries under those names.
  libs=/tmp/loopforge_libs
  mkdir -p "$libs"
  for l in nvrtc cublas cublasLt; do
    f=$(ls /usr/local/cuda/lib64/lib$l.so* /usr/local/cuda*/lib64/lib$l.so* \
          /usr/local/cuda*/targets/x86_64-linux/lib/lib$l.so* \
          $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null | tr ' ' '\n' | sed 's|$|/nvidia/*/lib/lib'$l'.so*|') \
          2>/dev/null | grep -v alt | head -1)
    if [ -n "$f" ]; then
      ln -sf "$f" "$libs/lib$l.so"
      export LD_LIBRARY_PATH="$libs:$(dirname "$f")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "lib$l.so -> $f"
    else
      echo "lib$l.so not found"
    fi
  done
  export LOOPFORGE_REQUIRE_NVRTC=1 LOOPFORGE_REQUIRE_GPU=1
  p=$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null || true)
  [ -n "$p" ] && export LOOPFORGE_PTXAS="$p"
  status=0
  summary=""
  for t in "$out"/*; do
    name=$(basename "$t")
    [ "$name" = gpu_bench ] && continue
    start=$(date +%s)
    if timeout 240 "$t" --test-threads 4 > "$logs/$name.log" 2>&1; then r=ok; else r=FAILED; status=1; fi
    line=$(grep -E '^test result' "$logs/$name.log" | tail -1)
    summary+=$(printf '%-16s %-7s %4ss  %s' "$name" "$r" "$(( $(date +%s) - start ))" "$line")$'\n'
    [ "$r" = ok ] || grep -E "panicked|FAILED|failed" "$logs/$name.log" | head -30
  done
  bench=""
  if [ -x "$out/gpu_bench" ]; then
    if timeout 300 "$out/gpu_bench" > "$logs/gpu_bench.log" 2>&1; then r=ok; else r=FAILED; status=1; fi
    summary+=$(printf '%-16s %-7s' gpu_bench "$r")$'\n'
    bench=$(cat "$logs/gpu_bench.log")
  fi
  echo "== GPU check summary =="
  printf '%s' "$summary"
  printf '%s\n' "$bench"
  exit $status
  ;;
*)
  echo "usage: $0 build|run"; exit 2 ;;
esac
