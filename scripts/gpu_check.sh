#!/usr/bin/env bash
# The GPU check, in two halves (the GPU machine has no Rust toolchain and no network):
#
#   scripts/gpu_check.sh build   here: builds the test binaries that launch on a GPU
#                                (cuda_codegen, graph_runtime) and the benchmark
#                                (examples/gpu_bench.rs), release, into target/gpu_check/ —
#                                name that folder in the device call's `carry`.
#   scripts/gpu_check.sh run     on the GPU machine: runs every CUDA test on the device
#                                against the reference interpreter (LOOPFORGE_REQUIRE_GPU=1
#                                makes a missing driver a failure, not a skip), then the
#                                benchmark against cuBLAS and ResNet-18 against PyTorch, the CUDA
#                                tests under compute-sanitizer, and prints the summary and the
#                                benchmark table last. Finishes in well under 8 minutes.
#                                Logs go to $OUT (when set) or /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu_check
case "${1:-run}" in
build)
  rm -rf "$out" && mkdir -p "$out"
  { cargo test --release --no-run --test cuda_codegen --test graph_runtime \
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
  # cudarc opens libnvrtc.so / libcublas.so by their plain names (or .so.12): link them
  # under those names, preferring the CUDA toolkit's (its NVRTC matches its ptxas and,
  # on the machines seen so far, the driver), then the pip wheels' (PyTorch's).
  libs=/tmp/loopforge_libs
  mkdir -p "$libs"
  site=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
  for l in nvrtc cublas cublasLt; do
    f=""
    for pat in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda*/lib64 \
               $(for s in $site; do echo "$s/nvidia/cu13/lib $s/nvidia/*/lib"; done); do
      f=$(ls $pat/lib$l.so* 2>/dev/null | grep -v -e alt -e builtins | head -1 || true)
      [ -n "$f" ] && break
    done
    if [ -n "$f" ]; then
      ln -sf "$f" "$libs/lib$l.so"
      export LD_LIBRARY_PATH="$libs:$(dirname "$f")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "lib$l.so -> $f"
    else
      echo "lib$l.so not found"
    fi
  done
  export LOOPFORGE_REQUIRE_NVRTC=1 LOOPFORGE_REQUIRE_GPU=1 RUST_BACKTRACE=0
  # The toolkit's ptxas, only where NVRTC is the toolkit's too (their PTX versions match).
  case "$(readlink -f "$libs/libnvrtc.so" 2>/dev/null || true)" in
    /usr/local/cuda*)
      p=$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null || true)
      if [ -n "$p" ]; then export LOOPFORGE_PTXAS="$p"; echo "ptxas: $p"; fi ;;
  esac
  status=0
  summary=""
  for t in "$out"/*; do
    name=$(basename "$t")
    [ "$name" = gpu_bench ] && continue
    start=$(date +%s)
    if timeout 120 "$t" --test-threads 8 > "$logs/$name.log" 2>&1; then r=ok; else r=FAILED; status=1; fi
    line=$(grep -E '^test result' "$logs/$name.log" | tail -1 || true)
    summary+=$(printf '%-16s %-7s %4ss  %s' "$name" "$r" "$(( $(date +%s) - start ))" "$line")$'\n'
    [ "$r" = ok ] || { grep -E -A8 "panicked" "$logs/$name.log" | head -60 || true; }
  done
  bench=""
  if [ -x "$out/gpu_bench" ]; then
    if timeout 150 "$out/gpu_bench" > "$logs/gpu_bench.log" 2>&1; then r=ok; else r=FAILED; status=1; fi
    summary+=$(printf '%-16s %-7s' gpu_bench "$r")$'\n'
    bench=$(cat "$logs/gpu_bench.log")
  fi
  torch=$(timeout 60 python3 scripts/torch_resnet18_gpu.py 2>&1 | tail -3 || true)
  # Out-of-bounds accesses that happen not to change a result: the CUDA tests once more
  # under compute-sanitizer's memcheck (where it is installed).
  sanitizer="compute-sanitizer: not found"
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [ -n "$cs" ]; then
    timeout 100 "$cs" --tool memcheck "$out/cuda_codegen" --test-threads 4 > "$logs/sanitizer.log" 2>&1 || true
    sanitizer="compute-sanitizer memcheck on cuda_codegen: $(grep -E 'ERROR SUMMARY|^test result' "$logs/sanitizer.log" | tr '\n' ' ' || true)"
  fi
  # With LOOPFORGE_NCU=1: Nsight Compute's view (speed of light, warp stalls) of the first
  # launch of each of the benchmark's loopforge kernels, at the small sizes.
  if [ "${LOOPFORGE_NCU:-0}" = 1 ]; then
    ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
    if [ -n "$ncu" ]; then
      for skip in 0 24 48; do
        timeout 60 "$ncu" --clock-control none --kernel-name main_kernel --launch-skip $skip --launch-count 1 \
          --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy \
          "$out/gpu_bench" quick > "$logs/ncu_$skip.txt" 2>&1 || true
      done
    fi
  fi
  echo "== GPU check summary =="
  printf '%s' "$summary"
  printf '%s\n' "$bench"
  printf '%s\n' "$torch"
  printf '%s\n' "$sanitizer"
  exit $status
  ;;
*)
  echo "usage: $0 build|run"; exit 2 ;;
esac
