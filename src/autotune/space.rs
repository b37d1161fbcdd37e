//! The candidate configurations of a workload: a small grid around what the templates
//! can express, the default first and the rest in a fixed pseudo-random order (so a
//! tuning run with fewer trials than candidates samples the whole grid).

use super::workload::Workload;
use super::TunedConfig;
use crate::error::Result;
use crate::schedules::{
    divisors, row_tiles, ConvConfig, ConvKernel, ConvShape, MatmulConfig, WinogradConfig,
};

/// Every candidate of `w`, its default first, without repeats.
pub fn candidates(w: &Workload) -> Result<Vec<TunedConfig>> {
    let mut grid = match w.default {
        TunedConfig::Conv2d(d) => conv_grid(&ConvShape::of(&w.out)?, d),
        TunedConfig::Matmul(d) => {
            let sh: Vec<i64> = w
                .out
                .shape()
                .iter()
                .map(|e| e.as_int().unwrap_or(1))
                .collect();
            matmul_grid(sh[0], sh[1], d)
        }
        TunedConfig::Winograd(d) => vec![TunedConfig::Winograd(WinogradConfig {
            per_row: !d.per_row,
            ..d
        })],
    };
    grid.retain(|c| *c != w.default);
    shuffle(&mut grid, 0x5eed);
    let mut out = vec![w.default];
    for c in grid {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Row tiles (the four divisors of the width up to 32 that fill 6-row register blocks
/// best), channel slices (the three largest divisors up to 512), the kernels that fit
/// the window, and the rows of a channel block in its task, in parallel tasks (with 2+
/// threads) or all in one accumulator; for a 1x1 kernel at stride 1 also its positions
/// fused across rows in tiles of 6 or 12.
fn conv_grid(shape: &ConvShape, d: ConvConfig) -> Vec<TunedConfig> {
    let mut tiles = row_tiles(shape.width, 32);
    tiles.truncate(4);
    let slices: Vec<i64> = divisors(shape.in_channels, 512)
        .into_iter()
        .take(3)
        .collect();
    let kernels: &[ConvKernel] = if shape.in_channels < 8 {
        &[ConvKernel::Window, ConvKernel::AllTaps, ConvKernel::PerTap]
    } else if shape.kh * shape.kw > 1 {
        &[ConvKernel::AllTaps, ConvKernel::PerTap]
    } else {
        &[ConvKernel::PerTap]
    };
    // (parallel_rows, all_rows): rows inside a block's task, rows parallel, or the whole
    // image of a block in one accumulator.
    let rows: &[(bool, bool)] = if d.threads > 1 {
        &[(false, false), (true, false), (false, true)]
    } else {
        &[(false, false), (false, true)]
    };
    let mut out = vec![];
    for &row_tile in &tiles {
        for &kernel in kernels {
            // `Window` reduces over every channel: one slice size is enough.
            let kcs = if kernel == ConvKernel::Window {
                &slices[..1]
            } else {
                &slices[..]
            };
            for &kc in kcs {
                for &(parallel_rows, all_rows) in rows {
                    out.push(TunedConfig::Conv2d(ConvConfig {
                        row_tile,
                        kc,
                        kernel,
                        parallel_rows,
                        all_rows,
                        fused_rows: false,
                        threads: d.threads,
                    }));
                }
            }
        }
    }
    // A 1x1 kernel's positions fused across rows, in tiles of 6 or 12.
    if shape.unit_stride {
        for row_tile in [6, 12] {
            for &kc in &slices {
                out.push(TunedConfig::Conv2d(ConvConfig {
                    row_tile,
                    kc,
                    kernel: ConvKernel::PerTap,
                    parallel_rows: false,
                    all_rows: false,
                    fused_rows: true,
                    threads: d.threads,
                }));
            }
        }
    }
    out
}

/// Register tiles of up to 12 f32x4 accumulators (`mr` of 1 to 8 rows, `nr` of 4 to 16
/// columns, within the result), the reduction unrolled by 1 or 4.
fn matmul_grid(m: i64, n: i64, d: MatmulConfig) -> Vec<TunedConfig> {
    let mut out = vec![];
    for mr in [1, 2, 3, 4, 6, 8].into_iter().filter(|&r| r <= m.max(1)) {
        for nr in [4, 8, 12, 16].into_iter().filter(|&c| c <= n) {
            if mr * nr / 4 > 12 {
                continue;
            }
            for k_unroll in [1, 2, 4] {
                out.push(TunedConfig::Matmul(MatmulConfig {
                    mr,
                    nr,
                    k_unroll,
                    ..d
                }));
            }
        }
    }
    out
}

/// Fisher–Yates with a fixed-seed linear congruential generator (reproducible order).
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed;
    for i in (1..v.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = ((x >> 33) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}
