//! The default schedules of `loopforge::schedules`, against the unscheduled computation.

mod common;
use common::*;
use loopforge::prelude::*;
use loopforge::schedules::{matmul_cpu, matmul_cpu_config, matmul_cpu_with, MatmulConfig};

#[test]
fn matmul_schedule_matches_the_reference_for_awkward_sizes() {
    // (37, 100, 23) on one thread: the 6 x 8 tile's blocks of 64 columns, the last
    // partial; (13, 96, 8) on two: blocks of 32.
    for &(m, n, k) in &[
        (37, 29, 23),
        (8, 8, 8),
        (1, 13, 5),
        (64, 64, 64),
        (37, 100, 23),
        (13, 96, 8),
    ] {
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
                ..MatmulConfig::default()
            },
            MatmulConfig {
                mr: 3,
                nr: 4,
                pack_b: true,
                k_unroll: 2,
                threads: 1,
                ..MatmulConfig::default()
            },
            // Packed row panels of `A`, column blocks (neither dividing every size).
            MatmulConfig {
                mr: 8,
                nr: 4,
                pack_b: true,
                k_unroll: 2,
                threads: 2,
                pack_a: true,
                nc: 8,
            },
            MatmulConfig {
                mr: 3,
                nr: 4,
                pack_b: false,
                k_unroll: 3,
                threads: 1,
                pack_a: true,
                nc: 12,
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
        for threads in [1, 2] {
            let s = matmul_cpu(&c, threads).unwrap();
            let got = run_all(&s, &args, Target::cpu(), 9);
            let what = format!("matmul_cpu {}x{}x{}, {} threads", m, n, k, threads);
            assert_outputs_close(&args, &got, &want, &what);
            // Both default configurations, whichever this CPU takes.
            for six_by_eight in [false, true] {
                let cfg = matmul_cpu_config(&c, threads, six_by_eight);
                let got = run_all(&matmul_cpu_with(&c, cfg).unwrap(), &args, Target::cpu(), 9);
                let what = format!("{} with {:?}", what, cfg);
                assert_outputs_close(&args, &got, &want, &what);
            }
        }
    }
}

/// `matmul_cpu`'s configurations: 12 x 4 in blocks of 64; 6 x 8 in blocks of up to 256
/// columns that leave at least two blocks per thread, rounded up to 16 (256 where the
/// width is symbolic).
#[test]
fn matmul_cpu_configurations() {
    for (n, threads, six_by_eight, want) in [
        (1024, 1, false, (12, 4, 64)),
        (1024, 2, false, (12, 4, 64)),
        (2048, 1, true, (6, 8, 256)),
        (2048, 2, true, (6, 8, 256)),
        (1024, 2, true, (6, 8, 256)),
        (512, 2, true, (6, 8, 128)),
        (360, 2, true, (6, 8, 96)),
        (37, 2, true, (6, 8, 16)),
        (37, 0, true, (6, 8, 32)),
    ] {
        let (_, _, c) = matmul(n, n, 16);
        let cfg = matmul_cpu_config(&c, threads, six_by_eight);
        assert_eq!(
            (cfg.mr, cfg.nr, cfg.nc),
            want,
            "{} on {} threads",
            n,
            threads
        );
        assert_eq!((cfg.threads, cfg.k_unroll, cfg.pack_a), (threads, 2, true));
    }
    let n = var("n");
    let a = placeholder(&[8.into(), 16.into()], DType::F32, "A");
    let b = placeholder(&[16.into(), n.clone()], DType::F32, "B");
    let k = reduce_axis(0, 16, "k");
    let c = compute(&[8.into(), n], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    assert_eq!(matmul_cpu_config(&c, 2, true).nc, 256);
}

#[test]
fn matmul_column_blocks_must_be_whole_tiles() {
    let (_, _, c) = matmul(16, 16, 16);
    for nc in [2, 6] {
        let cfg = MatmulConfig {
            nr: 4,
            nc,
            ..MatmulConfig::default()
        };
        let e = matmul_cpu_with(&c, cfg).unwrap_err().to_string();
        let want = format!(
            "({}): nc = {} must be 0 or a multiple of nr = 4",
            c.name(),
            nc
        );
        assert!(e.contains(&want), "{}", e);
    }
    let cfg = MatmulConfig {
        nr: 0,
        nc: 8,
        ..MatmulConfig::default()
    };
    let e = matmul_cpu_with(&c, cfg).unwrap_err().to_string();
    assert!(e.contains("nr = 0 must be at least 1"), "{}", e);
}
