//! Print the CUDA C of the library's SIMT GEMM (`cargo run --example cuda_gemm_source -- 4096`),
//! or its PTX for sm_90 (`... -- 4096 ptx`, needs NVRTC) to read with `ptxas -v`.
use loopforge::prelude::*;
use loopforge::schedules;

fn main() -> Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(4096);
    let a = placeholder(&[n.into(), n.into()], DType::F32, "A");
    let b = placeholder(&[n.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, n, "k");
    let c = compute(&[n.into(), n.into()], "C", |i| {
        sum(
            a.at(&[k.x(), i[0].clone()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    let s = schedules::matmul_cuda(&c)?;
    let f = lower(&s, &[a, b, c])?;
    if std::env::args().any(|a| a == "ptx") {
        let m = loopforge::codegen_cuda::compile(&f, Some("sm_90"))?;
        println!("{}", m.ptx());
    } else {
        println!("{}", loopforge::codegen_cuda::emit(&f)?.code);
    }
    Ok(())
}
