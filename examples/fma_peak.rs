//! The machine's f32 FMA peak per core at 128, 256 and 512 bits (where the CPU has
//! them), measured with hand-written loops of independent fused multiply-adds: the
//! reference that `BENCHMARKS.md` quotes kernels against ("of the 128-bit peak").
//!
//! Run: `cargo run --release --example fma_peak [--threads N]` (prints the median of
//! several rounds; N threads run the loop at once, each on its own accumulators).

use std::time::Instant;

/// Iterations of the inner loop per round: twelve FMAs each.
const ITERS: u64 = 20_000_000;
/// Independent accumulators (latency 4 x 2 FMA pipes needs at least 8).
const ACC: u64 = 12;

#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::x86_64::*;

    macro_rules! fma_loop {
        ($name:ident, $feat:literal, $ty:ty, $set1:ident, $fma:ident, $store:ident, $lanes:expr) => {
            #[target_feature(enable = $feat)]
            pub unsafe fn $name(iters: u64) -> f32 {
                let (a, b) = ($set1(0.999_99), $set1(1e-7));
                let mut acc: [$ty; super::ACC as usize] = [$set1(1.0); super::ACC as usize];
                for _ in 0..iters {
                    for x in acc.iter_mut() {
                        *x = $fma(*x, a, b);
                    }
                }
                let mut out = [0f32; $lanes];
                let mut s = 0.0;
                for x in acc {
                    $store(out.as_mut_ptr(), x);
                    s += out.iter().sum::<f32>();
                }
                s
            }
        };
    }
    fma_loop!(
        fma128,
        "fma",
        __m128,
        _mm_set1_ps,
        _mm_fmadd_ps,
        _mm_storeu_ps,
        4
    );
    fma_loop!(
        fma256,
        "avx2,fma",
        __m256,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps,
        8
    );
    fma_loop!(
        fma512,
        "avx512f",
        __m512,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_storeu_ps,
        16
    );
}

fn main() {
    let mut threads = 1usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--threads" {
            threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        type Probe = unsafe fn(u64) -> f32;
        let probes: [(&str, u64, bool, Probe); 3] = [
            (
                "128-bit (xmm)",
                4,
                is_x86_feature_detected!("fma"),
                probe::fma128,
            ),
            (
                "256-bit (ymm)",
                8,
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                probe::fma256,
            ),
            (
                "512-bit (zmm)",
                16,
                is_x86_feature_detected!("avx512f"),
                probe::fma512,
            ),
        ];
        for (name, lanes, ok, f) in probes {
            if !ok {
                println!("{:14} not on this CPU", name);
                continue;
            }
            let mut rates = Vec::new();
            for _ in 0..7 {
                let t = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        // SAFETY: the feature was detected above.
                        s.spawn(|| std::hint::black_box(unsafe { f(std::hint::black_box(ITERS)) }));
                    }
                });
                let flops = (ITERS * ACC * lanes * 2 * threads as u64) as f64;
                rates.push(flops / t.elapsed().as_secs_f64() / 1e9);
            }
            rates.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{:14} {:7.1} GFLOP/s on {} thread(s) (median of 7; min {:.1}, max {:.1})",
                name, rates[3], threads, rates[0], rates[6]
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("fma_peak measures x86-64 only");
}
