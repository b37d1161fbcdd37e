//! The default schedules of `loopforge::schedules`, against the unscheduled computation.

mod common;
use common::*;
use loopforge::prelude::*;
use loopforge::schedules::{matmul_cpu, matmul_cpu_with, MatmulConfig};

#[test]
fn matmul_schedule_matches_the_reference_for_awkward_sizes() {
    for &(m, n, k) in &[(37, 29, 23), (8, 8, 8), (1, 13, 5), (64, 64, 64)] {
        let (a, b, c) = matmul(m, n, k);
        let args = [a, b, c.clone()];
        let want = run_all(
            &create_schedule(&[c.clone()]).unwrap(),
            &args,
            Target::interp(),
            9,
        );
        let configs = [
            MatmulConfig::default(),
            MatmulConfig {
                mr: 5,
                nr: 12,
                pack_b: false,
                k_unroll: 3,
                threads: 2,
            },
            MatmulConfig {
                mr: 3,
                nr: 4,
                pack_b: true,
                k_unroll: 2,
                threads: 1,
            },
        ];
        for cfg in configs {
            let s = matmul_cpu_with(&c, cfg).unwrap();
            for t in [Target::interp(), Target::cpu()] {
                let got = run_all(&s, &args, t.clone(), 9);
                assert_outputs_close(
                    &args,
                    &got,
                    &want,
                    &format!("{}x{}x{} with {:?} on {:?}", m, n, k, cfg, t),
                );
            }
        }
        let s = matmul_cpu(&c, 2).unwrap();
        let got = run_all(&s, &args, Target::cpu(), 9);
        assert_outputs_close(&args, &got, &want, "matmul_cpu, 2 threads");
    }
}
