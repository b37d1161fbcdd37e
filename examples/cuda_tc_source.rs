//! Print the CUDA C (or, with `ptx`, the PTX for sm_90) of the library's tensor-core GEMM
//! (`cargo run --example cuda_tc_source -- 4096 [ptx]`).
use loopforge::prelude::*;
use loopforge::schedules;

fn main() -> Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(4096);
    let a = placeholder(&[n.into(), n.into()], DType::F16, "A");
    let b = placeholder(&[n.into(), n.into()], DType::F16, "B");
    let k = reduce_axis(0, n, "k");
    let c = compute(&[n.into(), n.into()], "C", |i| {
        sum(
            cast(DType::F32, a.at(&[i[0].clone(), k.x()]))
                * cast(DType::F32, b.at(&[k.x(), i[1].clone()])),
            &[k.clone()],
        )
    });
    let s = schedules::matmul_cuda_tensorcore(&c)?;
    let f = lower(&s, &[a, b, c])?;
    if std::env::args().any(|a| a == "ptx") {
        println!(
            "{}",
            loopforge::codegen_cuda::compile(&f, Some("sm_90"))?.ptx()
        );
    } else {
        println!("{}", loopforge::codegen_cuda::emit(&f)?.code);
    }
    Ok(())
}
