//! Copying a tile of f32 across with rows and columns swapped, in registers: the
//! micro-kernels' row-major tile into a `C` whose *rows* are contiguous (an NCHW
//! convolution's accumulator laid out `[channel][position]`, the kernel's tile being
//! positions x channels), and back.
//!
//! `transpose(src, src_ld, dst, dst_ld, rows, cols)` sets `dst[c * dst_ld + r] = src[r *
//! src_ld + c]` for every `r < rows`, `c < cols`: blocks of 8 x 8 through 256-bit
//! unpacks, shuffles and lane permutes, then blocks of 4 x 4 through 128-bit ones, the
//! last rows and columns one element at a time.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `dst[c * dst_ld + r] = src[r * src_ld + c]` for `r < rows`, `c < cols`.
///
/// # Safety
/// Both views must be valid for those elements and must not overlap; the CPU must have
/// AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
pub(super) unsafe fn transpose(
    src: *const f32,
    src_ld: usize,
    dst: *mut f32,
    dst_ld: usize,
    rows: usize,
    cols: usize,
) {
    let mut r = 0;
    // Rows in groups of 8 (8 x 8 blocks, then 4 x 4 ones), then of 4 (4 x 4 blocks); each
    // group's last columns, and the last rows, one element at a time.
    for height in [8, 4] {
        while r + height <= rows {
            let mut c = 0;
            while height == 8 && c + 8 <= cols {
                let (s, d) = (r * src_ld + c, c * dst_ld + r);
                unsafe { block8(src.add(s), src_ld, dst.add(d), dst_ld) };
                c += 8;
            }
            while c + 4 <= cols {
                for h in (0..height).step_by(4) {
                    let (s, d) = ((r + h) * src_ld + c, c * dst_ld + r + h);
                    unsafe { block4(src.add(s), src_ld, dst.add(d), dst_ld) };
                }
                c += 4;
            }
            unsafe { scalar(src, src_ld, dst, dst_ld, r..r + height, c..cols) };
            r += height;
        }
    }
    unsafe { scalar(src, src_ld, dst, dst_ld, r..rows, 0..cols) };
}

/// The elements of rows `rs` and columns `cs` one at a time.
///
/// # Safety
/// As [`transpose`].
#[cfg(target_arch = "x86_64")]
unsafe fn scalar(
    src: *const f32,
    src_ld: usize,
    dst: *mut f32,
    dst_ld: usize,
    rs: std::ops::Range<usize>,
    cs: std::ops::Range<usize>,
) {
    for r in rs {
        for c in cs.clone() {
            unsafe { *dst.add(c * dst_ld + r) = *src.add(r * src_ld + c) };
        }
    }
}

/// One 8 x 8 block.
///
/// # Safety
/// As [`transpose`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn block8(src: *const f32, src_ld: usize, dst: *mut f32, dst_ld: usize) {
    let row = |i: usize| unsafe { _mm256_loadu_ps(src.add(i * src_ld)) };
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
    // Pairs of rows interleaved: (r0[0], r1[0], r0[1], r1[1]) in each 128-bit half...
    let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
    let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
    let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
    let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
    // ...then quadruples: column `k` of rows 0-3 (and of 4-7) in one half each.
    let (u0, u1) = (
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
    );
    let (u2, u3) = (
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    );
    let (u4, u5) = (
        _mm256_shuffle_ps::<0x44>(t4, t6),
        _mm256_shuffle_ps::<0xEE>(t4, t6),
    );
    let (u6, u7) = (
        _mm256_shuffle_ps::<0x44>(t5, t7),
        _mm256_shuffle_ps::<0xEE>(t5, t7),
    );
    // The low halves hold columns 0-3, the high halves columns 4-7.
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (k, v) in out.into_iter().enumerate() {
        unsafe { _mm256_storeu_ps(dst.add(k * dst_ld), v) };
    }
}

/// One 4 x 4 block.
///
/// # Safety
/// As [`transpose`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn block4(src: *const f32, src_ld: usize, dst: *mut f32, dst_ld: usize) {
    let row = |i: usize| unsafe { _mm_loadu_ps(src.add(i * src_ld)) };
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
    let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
    let (t2, t3) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
    let out = [
        _mm_movelh_ps(t0, t1),
        _mm_movehl_ps(t1, t0),
        _mm_movelh_ps(t2, t3),
        _mm_movehl_ps(t3, t2),
    ];
    for (k, v) in out.into_iter().enumerate() {
        unsafe { _mm_storeu_ps(dst.add(k * dst_ld), v) };
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::transpose;

    #[test]
    fn every_shape_and_leading_dimension() {
        if !is_x86_feature_detected!("avx") {
            eprintln!("skipped: the CPU has no AVX");
            return;
        }
        for rows in 0..20 {
            for cols in 0..20 {
                let (src_ld, dst_ld) = (cols + 3, rows + 5);
                let src: Vec<f32> = (0..rows * src_ld).map(|k| k as f32).collect();
                let mut dst = vec![-1.0f32; cols * dst_ld];
                unsafe { transpose(src.as_ptr(), src_ld, dst.as_mut_ptr(), dst_ld, rows, cols) };
                for c in 0..cols {
                    for r in 0..dst_ld {
                        let want = if r < rows { src[r * src_ld + c] } else { -1.0 };
                        assert_eq!(
                            dst[c * dst_ld + r],
                            want,
                            "{}x{} at ({}, {})",
                            rows,
                            cols,
                            r,
                            c
                        );
                    }
                }
            }
        }
    }
}
