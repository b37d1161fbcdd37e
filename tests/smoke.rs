mod common;
use common::*;
use loopforge::prelude::*;

#[test]
fn smoke_matmul_split() {
    let (a, b, c) = matmul(37, 19, 23);
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let (io, ii) = s.split(&c, &i, 8).unwrap();
    let (jo, ji) = s.split(&c, &j, 4).unwrap();
    s.reorder(&c, &[&io, &jo, &ii, &ji]).unwrap();
    s.vectorize(&c, &ji).unwrap();
    let f = lower(&s, &[a.clone(), b.clone(), c.clone()]).unwrap();
    println!("{}", f);
    let x = NdArray::random(&[37, 23], DType::F32, 1);
    let y = NdArray::random(&[23, 19], DType::F32, 2);
    let base = create_schedule(&[c.clone()]).unwrap();
    let want = run(&base, &[a.clone(), b.clone(), c.clone()], &[&x, &y], &[(&[37, 19], DType::F32)], Target::interp());
    let got = run(&s, &[a.clone(), b.clone(), c.clone()], &[&x, &y], &[(&[37, 19], DType::F32)], Target::interp());
    assert_close(&got[0], &want[0], "interp");
    let got = run(&s, &[a.clone(), b.clone(), c.clone()], &[&x, &y], &[(&[37, 19], DType::F32)], Target::cpu());
    assert_close(&got[0], &want[0], "jit");
}
