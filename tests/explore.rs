mod common;
use common::*;
use loopforge::prelude::*;

#[test]
fn explore_compute_at_and_caches() {
    let n = 37i64;
    let a = placeholder(&[n.into(), n.into()], DType::F32, "A");
    let b = compute(&[n.into(), n.into()], "B", |i| a.at(&[i[0].clone(), i[1].clone()]) * 2.0f32);
    let c = compute(&[(n - 2).into(), n.into()], "C", |i| b.at(&[i[0].clone(), i[1].clone()]) + b.at(&[i[0].clone() + 2, i[1].clone()]));
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, _j] = s.axes2(&c).unwrap();
    let (io, _ii) = s.split(&c, &i, 8).unwrap();
    s.compute_at(&b, &c, &io).unwrap();
    let f = lower(&s, &[a.clone(), c.clone()]).unwrap();
    println!("{}", f);
    let x = NdArray::random(&[37, 37], DType::F32, 1);
    let base = create_schedule(&[c.clone()]).unwrap();
    let want = run(&base, &[a.clone(), c.clone()], &[&x], &[(&[35, 37], DType::F32)], Target::interp());
    let got = run(&s, &[a.clone(), c.clone()], &[&x], &[(&[35, 37], DType::F32)], Target::interp());
    assert_close(&got[0], &want[0], "interp");
    let got = run(&s, &[a.clone(), c.clone()], &[&x], &[(&[35, 37], DType::F32)], Target::cpu());
    assert_close(&got[0], &want[0], "jit");
}

#[test]
fn explore_cache_write_read() {
    let (a, b, c) = matmul(33, 20, 17);
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let cl = s.cache_write(&c, "local").unwrap();
    let al = s.cache_read(&a, "local", &[&cl]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let (io, jo, _ii, ji) = s.tile(&c, &i, &j, 8, 4).unwrap();
    s.vectorize(&c, &ji).unwrap();
    s.compute_at(&cl, &c, &jo).unwrap();
    let [ci, cj] = s.axes2(&cl).unwrap();
    let [ck] = <[Axis; 1]>::try_from(s.reduce_axes(&cl).unwrap()).unwrap();
    s.reorder(&cl, &[&ck, &ci, &cj]).unwrap();
    s.vectorize(&cl, &cj).unwrap();
    s.compute_at(&al, &c, &io).unwrap();
    let f = lower(&s, &[a.clone(), b.clone(), c.clone()]).unwrap();
    println!("{}", f);
    let x = NdArray::random(&[33, 17], DType::F32, 1);
    let y = NdArray::random(&[17, 20], DType::F32, 2);
    let base = create_schedule(&[c.clone()]).unwrap();
    let args = [a.clone(), b.clone(), c.clone()];
    let want = run(&base, &args, &[&x, &y], &[(&[33, 20], DType::F32)], Target::interp());
    let got = run(&s, &args, &[&x, &y], &[(&[33, 20], DType::F32)], Target::interp());
    assert_close(&got[0], &want[0], "interp");
    let got = run(&s, &args, &[&x, &y], &[(&[33, 20], DType::F32)], Target::cpu());
    assert_close(&got[0], &want[0], "jit");
}
