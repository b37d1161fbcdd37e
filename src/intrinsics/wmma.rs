//! Tensor-core intrinsics (CUDA `wmma`, m16n16k16, float16 operands, float32 accumulator),
//! emitted as inline PTX (`wmma.load`, `wmma.mma`, `wmma.store`: no header needed), each
//! executed by the 32 threads of a warp together:
//!
//! - [`wmma_load_a`]: `AF[i, k] = A[i, k]` — a 16x16 float16 tile (rows contiguous,
//!   leading dimension a multiple of 8, 32-byte aligned) into a `wmma.matrix_a` fragment;
//! - [`wmma_load_b`]: `BF[k, j] = B[k, j]` into a `wmma.matrix_b` fragment;
//! - [`wmma_mma`]: `CF[i, j] = sum_k f32(AF[i, k]) * f32(BF[k, j])` on fragments (mode
//!   `Init` fills the accumulator with 0, `Update` adds);
//! - [`wmma_store`]: `C[i, j] = CF[i, j]`, a float32 accumulator to memory.
//!
//! The reference interpreter runs the declarations, once per warp, in the warp's first
//! thread: the layout of fragment registers is the hardware's business.

use super::{register_once, CudaImpl, CudaOperand, TensorIntrin};
use crate::error::Result;
use crate::lower::ir::IntrinMode;
use crate::te::{cast, compute_named, placeholder, reduce_axis, sum, DType, Tensor};
use std::sync::Arc;

/// The device functions of every wmma intrinsic (emitted once per kernel that uses one).
const SOURCE: &str = r#"__device__ __forceinline__ void lf_wmma_load_a(unsigned* f, const unsigned short* p, int ld) {
  asm volatile("wmma.load.a.sync.aligned.row.m16n16k16.f16 {%0, %1, %2, %3, %4, %5, %6, %7}, [%8], %9;"
               : "=r"(f[0]), "=r"(f[1]), "=r"(f[2]), "=r"(f[3]), "=r"(f[4]), "=r"(f[5]), "=r"(f[6]), "=r"(f[7])
               : "l"(p), "r"(ld) : "memory");
}

__device__ __forceinline__ void lf_wmma_load_b(unsigned* f, const unsigned short* p, int ld) {
  asm volatile("wmma.load.b.sync.aligned.row.m16n16k16.f16 {%0, %1, %2, %3, %4, %5, %6, %7}, [%8], %9;"
               : "=r"(f[0]), "=r"(f[1]), "=r"(f[2]), "=r"(f[3]), "=r"(f[4]), "=r"(f[5]), "=r"(f[6]), "=r"(f[7])
               : "l"(p), "r"(ld) : "memory");
}

__device__ __forceinline__ void lf_wmma_fill(float* d, float v) {
  for (int i = 0; i < 8; ++i) d[i] = v;
}

__device__ __forceinline__ void lf_wmma_mma(float* d, const unsigned* a, const unsigned* b) {
  asm volatile("wmma.mma.sync.aligned.row.row.m16n16k16.f32.f32 "
               "{%0, %1, %2, %3, %4, %5, %6, %7}, "
               "{%8, %9, %10, %11, %12, %13, %14, %15}, "
               "{%16, %17, %18, %19, %20, %21, %22, %23}, "
               "{%0, %1, %2, %3, %4, %5, %6, %7};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(a[4]), "r"(a[5]), "r"(a[6]), "r"(a[7]),
                 "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(b[4]), "r"(b[5]), "r"(b[6]), "r"(b[7]));
}

__device__ __forceinline__ void lf_wmma_store(float* p, const float* d, int ld) {
  asm volatile("wmma.store.d.sync.aligned.row.m16n16k16.f32 [%0], {%1, %2, %3, %4, %5, %6, %7, %8}, %9;"
               :: "l"(p), "f"(d[0]), "f"(d[1]), "f"(d[2]), "f"(d[3]), "f"(d[4]), "f"(d[5]), "f"(d[6]), "f"(d[7]), "r"(ld)
               : "memory");
}
"#;

fn cuda(call: fn(IntrinMode, &[CudaOperand]) -> String) -> Option<CudaImpl> {
    Some(CudaImpl {
        source: SOURCE,
        call,
        warp_collective: true,
    })
}

/// A 16x16 copy `out[r, c] = in[r, c]` of `dt`.
fn copy16(dt: DType, axes: [&str; 2], out: &str) -> (Tensor, Tensor) {
    let x = placeholder(&[16.into(), 16.into()], dt, "X");
    let y = compute_named(&[16.into(), 16.into()], out, &axes, |i| {
        x.at(&[i[0].clone(), i[1].clone()])
    });
    (x, y)
}

/// `AF[i, k] = A[i, k]`: a float16 tile into a `wmma.matrix_a` fragment.
pub fn wmma_load_a() -> Result<Arc<TensorIntrin>> {
    register_once("wmma_load_a_f16", || {
        let (x, y) = copy16(DType::F16, ["i", "k"], "AF");
        TensorIntrin::with_impls(
            "wmma_load_a_f16",
            &y,
            &[x],
            None,
            cuda(|_, o| format!("lf_wmma_load_a({}, {}, {});", o[1].ptr, o[0].ptr, o[0].ld)),
        )
    })
}

/// `BF[k, j] = B[k, j]`: a float16 tile into a `wmma.matrix_b` fragment.
pub fn wmma_load_b() -> Result<Arc<TensorIntrin>> {
    register_once("wmma_load_b_f16", || {
        let (x, y) = copy16(DType::F16, ["k", "j"], "BF");
        TensorIntrin::with_impls(
            "wmma_load_b_f16",
            &y,
            &[x],
            None,
            cuda(|_, o| format!("lf_wmma_load_b({}, {}, {});", o[1].ptr, o[0].ptr, o[0].ld)),
        )
    })
}

/// `CF[i, j] = sum_k f32(AF[i, k]) * f32(BF[k, j])` on fragments.
pub fn wmma_mma() -> Result<Arc<TensorIntrin>> {
    register_once("wmma_mma_f16_f32", || {
        let a = placeholder(&[16.into(), 16.into()], DType::F16, "AF");
        let b = placeholder(&[16.into(), 16.into()], DType::F16, "BF");
        let k = reduce_axis(0, 16, "k");
        let c = compute_named(&[16.into(), 16.into()], "CF", &["i", "j"], |i| {
            sum(
                cast(DType::F32, a.at(&[i[0].clone(), k.x()]))
                    * cast(DType::F32, b.at(&[k.x(), i[1].clone()])),
                &[k.clone()],
            )
        });
        TensorIntrin::with_impls(
            "wmma_mma_f16_f32",
            &c,
            &[a, b],
            None,
            cuda(|mode, o| match mode {
                IntrinMode::Init => format!("lf_wmma_fill({}, 0.0f);", o[0].ptr),
                IntrinMode::Update => {
                    format!("lf_wmma_mma({}, {}, {});", o[2].ptr, o[0].ptr, o[1].ptr)
                }
                IntrinMode::Compute => format!(
                    "lf_wmma_fill({}, 0.0f); lf_wmma_mma({}, {}, {});",
                    o[2].ptr, o[2].ptr, o[0].ptr, o[1].ptr
                ),
            }),
        )
    })
}

/// `C[i, j] = CF[i, j]`: a float32 accumulator fragment to memory.
pub fn wmma_store() -> Result<Arc<TensorIntrin>> {
    register_once("wmma_store_f32", || {
        let (x, y) = copy16(DType::F32, ["i", "j"], "C");
        TensorIntrin::with_impls(
            "wmma_store_f32",
            &y,
            &[x],
            None,
            cuda(|_, o| format!("lf_wmma_store({}, {}, {});", o[1].ptr, o[0].ptr, o[1].ld)),
        )
    })
}
