//! The TVM paper's two example computations, checked against naive Rust evaluation, with
//! constant and symbolic shapes, on the interpreter and the JIT.

mod common;
use common::*;
use loopforge::prelude::*;

fn naive_matmul_nt(a: &[f32], b: &[f32], m: usize, n: usize, h: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f32;
            for k in 0..h {
                s += a[i * h + k] * b[j * h + k];
            }
            c[i * n + j] = s;
        }
    }
    c
}

fn scheduled(c: &Tensor) -> Schedule {
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(c).unwrap();
    let k = s.reduce_axes(c).unwrap().remove(0);
    let (io, jo, ii, ji) = s.tile(c, &i, &j, 8, 8).unwrap();
    let (ko, ki) = s.split(c, &k, 4).unwrap();
    s.reorder(c, &[&io, &jo, &ko, &ii, &ki, &ji]).unwrap();
    s.unroll(c, &ki).unwrap();
    s.vectorize(c, &ji).unwrap();
    s.parallel(c, &io).unwrap();
    s
}

fn check_matmul(m: Expr, n: Expr, h: Expr, sizes: (usize, usize, usize)) {
    let (a, b, c) = matmul_nt(m, n, h);
    let (mm, nn, hh) = sizes;
    let x = NdArray::random(&[mm, hh], DType::F32, 11);
    let y = NdArray::random(&[nn, hh], DType::F32, 12);
    let want = naive_matmul_nt(x.as_slice().unwrap(), y.as_slice().unwrap(), mm, nn, hh);
    let want = NdArray::from_vec(&[mm, nn], want).unwrap();
    for s in [create_schedule(&[c.clone()]).unwrap(), scheduled(&c)] {
        for t in [Target::interp(), Target::cpu()] {
            let k = build(&s, &[a.clone(), b.clone(), c.clone()], t.clone()).unwrap();
            let mut z = NdArray::zeros(&[mm, nn], DType::F32);
            k.run(&[&x, &y], &mut [&mut z]).unwrap();
            assert_close(&z, &want, &format!("matmul {:?} on {:?}", sizes, t));
        }
    }
}

#[test]
fn matmul_transposed_constant_shapes() {
    check_matmul(45.into(), 29.into(), 31.into(), (45, 29, 31));
}

#[test]
fn matmul_transposed_symbolic_shapes() {
    let (m, n, h) = (var("m"), var("n"), var("h"));
    check_matmul(m.clone(), n.clone(), h.clone(), (45, 29, 31));
    check_matmul(m, n, h, (16, 8, 4));
}

#[test]
fn symbolic_kernel_binds_dimensions_per_call() {
    let (a, b, c) = matmul_nt(var("m"), var("n"), var("h"));
    let s = scheduled(&c);
    let k = build(&s, &[a, b, c], Target::cpu()).unwrap();
    for &(m, n, h) in &[(3usize, 5usize, 7usize), (17, 9, 33), (1, 1, 1)] {
        let x = NdArray::random(&[m, h], DType::F32, 1);
        let y = NdArray::random(&[n, h], DType::F32, 2);
        let mut z = NdArray::zeros(&[m, n], DType::F32);
        k.run(&[&x, &y], &mut [&mut z]).unwrap();
        let want = NdArray::from_vec(
            &[m, n],
            naive_matmul_nt(x.as_slice().unwrap(), y.as_slice().unwrap(), m, n, h),
        )
        .unwrap();
        assert_close(&z, &want, "symbolic matmul");
    }
}

/// `out[i, x, y] = sum_{kc, kx, ky} data[kc, x + kx, y + ky] * w[i, kx, ky]`.
#[test]
fn paper_convolution() {
    let (ci, co, hh, ww, kk) = (3usize, 5usize, 12usize, 10usize, 3usize);
    let (oh, ow) = (hh - kk + 1, ww - kk + 1);
    let data = placeholder(
        &[(ci as i64).into(), (hh as i64).into(), (ww as i64).into()],
        DType::F32,
        "data",
    );
    let w = placeholder(
        &[(co as i64).into(), (kk as i64).into(), (kk as i64).into()],
        DType::F32,
        "w",
    );
    let kc = reduce_axis(0, ci as i64, "kc");
    let kx = reduce_axis(0, kk as i64, "kx");
    let ky = reduce_axis(0, kk as i64, "ky");
    let out = compute(
        &[(co as i64).into(), (oh as i64).into(), (ow as i64).into()],
        "out",
        |i| {
            sum(
                data.at(&[kc.x(), i[1].clone() + kx.x(), i[2].clone() + ky.x()])
                    * w.at(&[i[0].clone(), kx.x(), ky.x()]),
                &[kc.clone(), kx.clone(), ky.clone()],
            )
        },
    );
    let x = NdArray::random(&[ci, hh, ww], DType::F32, 5);
    let f = NdArray::random(&[co, kk, kk], DType::F32, 6);
    let (xd, fd) = (x.as_slice::<f32>().unwrap(), f.as_slice::<f32>().unwrap());
    let mut want = vec![0f32; co * oh * ow];
    for i in 0..co {
        for y0 in 0..oh {
            for x0 in 0..ow {
                let mut s = 0f32;
                for c in 0..ci {
                    for dx in 0..kk {
                        for dy in 0..kk {
                            s += xd[c * hh * ww + (y0 + dx) * ww + (x0 + dy)]
                                * fd[i * kk * kk + dx * kk + dy];
                        }
                    }
                }
                want[i * oh * ow + y0 * ow + x0] = s;
            }
        }
    }
    let want = NdArray::from_vec(&[co, oh, ow], want).unwrap();
    let mut s = create_schedule(&[out.clone()]).unwrap();
    let [oi, ox, oy] = s.axes3(&out).unwrap();
    let (yo, yi) = s.split(&out, &oy, 4).unwrap();
    let rk: Vec<Axis> = s.reduce_axes(&out).unwrap();
    s.reorder(&out, &[&oi, &ox, &yo, &rk[0], &rk[1], &rk[2], &yi])
        .unwrap();
    s.vectorize(&out, &yi).unwrap();
    s.parallel(&out, &oi).unwrap();
    for sched in [create_schedule(&[out.clone()]).unwrap(), s] {
        for t in [Target::interp(), Target::cpu()] {
            let k = build(&sched, &[data.clone(), w.clone(), out.clone()], t.clone()).unwrap();
            let mut z = NdArray::zeros(&[co, oh, ow], DType::F32);
            k.run(&[&x, &f], &mut [&mut z]).unwrap();
            assert_close(&z, &want, &format!("convolution on {:?}", t));
        }
    }
}
