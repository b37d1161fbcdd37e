//! Unit tests of the CUDA backend on hand-built IR: expression printing (precedence,
//! literals, semantics helpers), scalarized vectors, guards, allocations, and the typed
//! errors. Where NVRTC loads, the emitted sources are compiled too.

use super::*;
use crate::error::Error;
use crate::lower::ir::{Buffer, ForKind, Scope, Stmt};
use crate::te::{BinOp, CmpOp, DType, Expr, ExprNode, MathFn, Var};

fn buf(name: &str, dt: DType, n: i64) -> Buffer {
    buf_in(name, dt, n, Scope::Global)
}
fn buf_in(name: &str, dt: DType, n: i64, scope: Scope) -> Buffer {
    Buffer::new(name, dt, vec![Expr::int(n)], scope)
}
fn v(name: &str) -> Var {
    Var::new(name, DType::I64)
}
fn st(b: &Buffer, idx: impl Into<Expr>, val: impl Into<Expr>) -> Stmt {
    Stmt::Store {
        buf: b.clone(),
        indices: vec![idx.into()],
        value: val.into(),
    }
}
fn ld(b: &Buffer, idx: impl Into<Expr>) -> Expr {
    b.load(vec![idx.into()])
}
fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::new(ExprNode::Binary(op, a, b))
}
fn call(f: MathFn, args: Vec<Expr>) -> Expr {
    Expr::new(ExprNode::Call(f, args))
}
fn bind(var: &Var, n: impl Into<Expr>, tag: &str, body: Stmt) -> Stmt {
    Stmt::for_(
        var.clone(),
        Expr::int(0),
        n.into(),
        ForKind::ThreadBinding(tag.into()),
        body,
    )
}
fn alloc(b: &Buffer, body: Stmt) -> Stmt {
    Stmt::Allocate {
        buf: b.clone(),
        body: Box::new(body),
    }
}
fn func(params: Vec<Buffer>, body: Stmt) -> LoweredFunc {
    LoweredFunc {
        name: "f".into(),
        params,
        shape_vars: vec![],
        body,
    }
}
/// A one-thread kernel storing `e` (of dtype `dt`) into `Out[0]`; inputs `F` (f32),
/// `D` (f64), `I` (i32), `L` (i64), `Q` (bool), `H` (f16), `B` (bf16), 8 elements each.
fn scalar_kernel(dt: DType, e: Expr) -> LoweredFunc {
    let out = buf("Out", dt, 8);
    let t = v("t");
    let mut params: Vec<Buffer> = [
        ("F", DType::F32),
        ("D", DType::F64),
        ("I", DType::I32),
        ("L", DType::I64),
        ("Q", DType::Bool),
        ("H", DType::F16),
        ("B", DType::BF16),
    ]
    .iter()
    .map(|(n, d)| buf(n, *d, 8))
    .collect();
    params.push(out.clone());
    func(params, bind(&t, 1, "threadIdx.x", st(&out, 0, e)))
}
/// The C text of `e` (the right-hand side of the store in [`scalar_kernel`]).
fn c_of(dt: DType, e: Expr) -> String {
    let src = emit(&scalar_kernel(dt, e)).unwrap();
    let line = src
        .code
        .lines()
        .find(|l| l.trim_start().starts_with("Out[0] = "))
        .unwrap_or_else(|| panic!("no store in\n{}", src.code));
    line.trim_start()["Out[0] = ".len()..]
        .trim_end_matches(';')
        .to_string()
}
fn f(i: i64) -> Expr {
    ld(&buf("F", DType::F32, 8), i)
}
fn d(i: i64) -> Expr {
    ld(&buf("D", DType::F64, 8), i)
}
fn int(i: i64) -> Expr {
    ld(&buf("I", DType::I32, 8), i)
}
fn long(i: i64) -> Expr {
    ld(&buf("L", DType::I64, 8), i)
}
fn q(i: i64) -> Expr {
    ld(&buf("Q", DType::Bool, 8), i)
}
fn h(i: i64) -> Expr {
    ld(&buf("H", DType::F16, 8), i)
}
fn bh(i: i64) -> Expr {
    ld(&buf("B", DType::BF16, 8), i)
}

/// Compile with NVRTC for sm_80 where it is present.
fn compiles(src: &CudaSource) {
    if nvrtc_available() {
        compile_ptx(src, "sm_80").unwrap_or_else(|e| panic!("{}", e));
    }
}

#[test]
fn precedence_and_parentheses() {
    use BinOp::*;
    let (a, b, c) = (f(0), f(1), f(2));
    assert_eq!(
        c_of(
            DType::F32,
            bin(Mul, bin(Add, a.clone(), b.clone()), c.clone())
        ),
        "(F[0] + F[1]) * F[2]"
    );
    assert_eq!(
        c_of(
            DType::F32,
            bin(Add, a.clone(), bin(Mul, b.clone(), c.clone()))
        ),
        "F[0] + F[1] * F[2]"
    );
    // Same precedence on the right keeps its parentheses (evaluation order of floats).
    assert_eq!(
        c_of(
            DType::F32,
            bin(Sub, a.clone(), bin(Sub, b.clone(), c.clone()))
        ),
        "F[0] - (F[1] - F[2])"
    );
    assert_eq!(
        c_of(
            DType::F32,
            bin(Sub, bin(Sub, a.clone(), b.clone()), c.clone())
        ),
        "F[0] - F[1] - F[2]"
    );
    assert_eq!(
        c_of(
            DType::F32,
            bin(Div, a.clone(), bin(Mul, b.clone(), c.clone()))
        ),
        "F[0] / (F[1] * F[2])"
    );
    let sel = Expr::new(ExprNode::Select(
        Expr::new(ExprNode::And(
            Expr::new(ExprNode::Cmp(CmpOp::Lt, a.clone(), b.clone())),
            Expr::new(ExprNode::Or(q(0), Expr::new(ExprNode::Not(q(1))))),
        )),
        bin(Add, a.clone(), c.clone()),
        Expr::new(ExprNode::Select(q(2), b.clone(), c.clone())),
    ));
    assert_eq!(
        c_of(DType::F32, sel),
        "F[0] < F[1] && (Q[0] || !Q[1]) ? F[0] + F[2] : (Q[2] ? F[1] : F[2])"
    );
}

#[test]
fn literals() {
    use BinOp::*;
    let lit = |v: f64, dt: DType| c_of(dt, Expr::float_of(v, dt));
    assert_eq!(lit(1.0, DType::F32), "1.0f");
    assert_eq!(lit(0.1, DType::F32), "0.1f");
    assert_eq!(lit(-2.5, DType::F64), "-2.5");
    assert_eq!(lit(f64::INFINITY, DType::F32), "__int_as_float(0x7f800000)");
    assert_eq!(
        lit(f64::NEG_INFINITY, DType::F32),
        "-__int_as_float(0x7f800000)"
    );
    assert_eq!(
        lit(f64::NAN, DType::F64),
        "__longlong_as_double(0x7ff8000000000000LL)"
    );
    assert_eq!(
        c_of(DType::I32, Expr::int_of(i32::MIN as i64, DType::I32)),
        "(-2147483647 - 1)"
    );
    assert_eq!(
        c_of(DType::I64, Expr::int(i64::MIN)),
        "(-9223372036854775807LL - 1LL)"
    );
    assert_eq!(c_of(DType::I64, Expr::int(1 << 40)), "1099511627776LL");
    assert_eq!(c_of(DType::Bool, Expr::bool(true)), "true");
    // int64 literal arithmetic is done in long long, not int.
    let big = bin(Mul, Expr::int(100000), Expr::int(100000));
    assert_eq!(c_of(DType::I64, big), "100000LL * 100000");
    let nested = bin(Mul, bin(Add, Expr::int(1), Expr::int(2)), Expr::int(100000));
    assert_eq!(c_of(DType::I64, nested), "(1LL + 2) * 100000");
    assert_eq!(
        c_of(DType::I64, bin(Add, long(0), Expr::int(-3))),
        "L[0] + -3"
    );
}

/// Halves: `unsigned short` bits in memory, `float` values in expressions, every
/// operation rounded, conversions through `float`, helpers emitted only when used.
#[test]
fn half_precision_bits_in_memory_floats_rounded_in_expressions() {
    use BinOp::*;
    let c15 = Expr::float_of(1.5, DType::F16);
    let e = bin(Add, bin(Mul, h(0), h(1)), c15);
    let src = emit(&scalar_kernel(DType::F16, e.clone())).unwrap();
    let c = &src.code;
    assert_eq!(
        c_of(DType::F16, e),
        "lf_f32_to_f16(lf_round_f16(lf_round_f16(lf_f16_to_f32(H[0]) * lf_f16_to_f32(H[1])) + 1.5f))"
    );
    assert!(c.contains("const unsigned short* __restrict__ H"), "{}", c);
    assert!(c.contains("unsigned short* __restrict__ Out"), "{}", c);
    assert!(
        c.contains("asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(h) : \"f\"(f));"),
        "{}",
        c
    );
    assert!(
        c.contains("asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(h));"),
        "{}",
        c
    );
    assert!(!c.contains("#include") && !c.contains("bf16"), "{}", c);
    // The conversions are defined before the rounding helper that calls them.
    let at = |n: &str| {
        c.find(&format!(" {}(", n))
            .unwrap_or_else(|| panic!("{} in {}", n, c))
    };
    assert!(at("lf_f16_to_f32") < at("lf_round_f16") && at("lf_f32_to_f16") < at("lf_round_f16"));
    compiles(&src);

    let bf = bin(Sub, bh(0), Expr::float_of(0.1, DType::BF16));
    let src = emit(&scalar_kernel(DType::BF16, bf.clone())).unwrap();
    assert!(
        src.code
            .contains("return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);"),
        "{}",
        src.code
    );
    assert!(!src.code.contains("lf_f16_to_f32"), "{}", src.code);
    // 0.1 rounded to bfloat16 is 0.10009765625, printed as the shortest float that reads
    // back as that value.
    assert_eq!(
        c_of(DType::BF16, bf),
        "lf_f32_to_bf16(lf_round_bf16(lf_bf16_to_f32(B[0]) - 0.100097656f))"
    );
    compiles(&src);

    // Casts go through float; from a half the float is exact.
    let cast = |to: DType, x: Expr| Expr::new(ExprNode::Cast(to, x));
    assert_eq!(
        c_of(DType::F32, cast(DType::F32, h(0))),
        "(float)lf_f16_to_f32(H[0])"
    );
    assert_eq!(
        c_of(DType::I32, cast(DType::I32, bh(0))),
        "__float2int_rz(lf_bf16_to_f32(B[0]))"
    );
    assert_eq!(
        c_of(DType::F16, cast(DType::F16, d(0))),
        "lf_f32_to_f16(lf_round_f16((float)D[0]))"
    );
    assert_eq!(
        c_of(DType::BF16, cast(DType::BF16, h(0))),
        "lf_f32_to_bf16(lf_round_bf16(lf_f16_to_f32(H[0])))"
    );
    assert_eq!(
        c_of(DType::Bool, cast(DType::Bool, h(0))),
        "lf_f16_to_f32(H[0]) != 0.0f"
    );
    assert_eq!(
        c_of(DType::F16, call(MathFn::Sqrt, vec![h(0)])),
        "lf_f32_to_f16(lf_round_f16(sqrtf(lf_f16_to_f32(H[0]))))"
    );
    assert_eq!(
        c_of(DType::F16, Expr::float_of(f64::INFINITY, DType::F16)),
        "lf_f32_to_f16(__int_as_float(0x7f800000))"
    );
    // A shared half buffer holds bits too.
    let sh = buf_in("S", DType::F16, 32, Scope::Shared);
    let out = buf("Out", DType::F16, 32);
    let t = v("t");
    let body = bind(
        &t,
        32,
        "threadIdx.x",
        alloc(
            &sh,
            Stmt::seq(vec![
                st(&sh, t.expr(), ld(&out, t.expr())),
                st(&out, t.expr(), ld(&sh, t.expr())),
            ]),
        ),
    );
    let src = emit(&func(vec![out], body)).unwrap();
    assert!(
        src.code
            .contains("__shared__ __align__(32) unsigned short S[32];"),
        "{}",
        src.code
    );
    compiles(&src);
}

#[test]
fn semantics_helpers_casts_and_math() {
    use BinOp::*;
    let src = emit(&scalar_kernel(DType::I32, bin(Div, int(0), int(1)))).unwrap();
    assert!(
        src.code.contains("lf_floordiv_i32(I[0], I[1])"),
        "{}",
        src.code
    );
    assert!(src
        .code
        .contains("if (b == -1) return (int)((unsigned)0 - (unsigned)a);"));
    assert_eq!(
        c_of(DType::I64, bin(Mod, long(0), Expr::int(16))),
        "lf_floormod_i64(L[0], 16)"
    );
    assert_eq!(
        c_of(DType::I32, bin(Add, int(0), int(1))),
        "lf_add_i32(I[0], I[1])"
    );
    assert_eq!(
        c_of(DType::I64, bin(Min, long(0), long(1))),
        "llmin(L[0], L[1])"
    );
    assert_eq!(
        c_of(DType::I32, bin(Max, int(0), int(1))),
        "max(I[0], I[1])"
    );
    assert_eq!(
        c_of(DType::F32, bin(Min, f(0), f(1))),
        "lf_fmin_f32(F[0], F[1])"
    );
    assert_eq!(
        c_of(DType::F64, bin(Max, d(0), d(1))),
        "lf_fmax_f64(D[0], D[1])"
    );
    assert_eq!(c_of(DType::F32, bin(Mod, f(0), f(1))), "fmodf(F[0], F[1])");
    assert_eq!(c_of(DType::Bool, bin(Add, q(0), q(1))), "Q[0] || Q[1]");
    assert_eq!(c_of(DType::Bool, bin(Mod, q(0), q(1))), "false");
    let cast = |to: DType, e: Expr| Expr::new(ExprNode::Cast(to, e));
    assert_eq!(
        c_of(DType::I32, cast(DType::I32, f(0))),
        "__float2int_rz(F[0])"
    );
    assert_eq!(
        c_of(DType::I64, cast(DType::I64, d(0))),
        "__double2ll_rz(D[0])"
    );
    assert_eq!(c_of(DType::F32, cast(DType::F32, long(0))), "(float)L[0]");
    assert_eq!(c_of(DType::Bool, cast(DType::Bool, f(0))), "F[0] != 0.0f");
    assert_eq!(c_of(DType::I32, cast(DType::I32, q(0))), "(int)Q[0]");
    assert_eq!(
        c_of(DType::F32, cast(DType::F32, bin(Add, long(0), long(1)))),
        "(float)(L[0] + L[1])"
    );
    assert_eq!(
        c_of(DType::F32, call(MathFn::Sigmoid, vec![f(0)])),
        "1.0f / (1.0f + expf(-F[0]))"
    );
    assert_eq!(
        c_of(DType::F64, call(MathFn::Pow, vec![d(0), d(1)])),
        "pow(D[0], D[1])"
    );
    assert_eq!(
        c_of(DType::F32, call(MathFn::Abs, vec![f(0)])),
        "fabsf(F[0])"
    );
    assert_eq!(
        c_of(DType::I64, call(MathFn::Abs, vec![long(0)])),
        "llabs(L[0])"
    );
    assert_eq!(c_of(DType::I32, call(MathFn::Floor, vec![int(0)])), "I[0]");
}

/// Every operator, cast and math function of every type in one kernel, compiled.
#[test]
fn every_expression_kind_compiles() {
    let ops = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Mod,
        BinOp::Min,
        BinOp::Max,
    ];
    let tys = [
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::Bool,
        DType::F16,
        DType::BF16,
    ];
    let input = |dt: DType, i: i64| match dt {
        DType::F32 => f(i),
        DType::F64 => d(i),
        DType::I32 => int(i),
        DType::I64 => long(i),
        DType::Bool => q(i),
        DType::F16 => h(i),
        DType::BF16 => bh(i),
    };
    let outs: Vec<Buffer> = tys
        .iter()
        .map(|t| buf(&format!("O{}", t), *t, 64))
        .collect();
    let mut body = vec![];
    for (o, &dt) in outs.iter().zip(&tys) {
        let mut k = 0;
        let mut put = |e: Expr, body: &mut Vec<Stmt>| {
            body.push(st(o, k, e));
            k += 1;
        };
        for op in ops {
            put(bin(op, input(dt, 0), input(dt, 1)), &mut body);
        }
        for from in tys {
            put(Expr::new(ExprNode::Cast(dt, input(from, 2))), &mut body);
        }
        let fns: &[MathFn] = if dt.is_float() {
            &[
                MathFn::Exp,
                MathFn::Log,
                MathFn::Log1p,
                MathFn::Sqrt,
                MathFn::Tanh,
                MathFn::Sigmoid,
                MathFn::Erf,
                MathFn::Pow,
                MathFn::Abs,
                MathFn::Floor,
                MathFn::Ceil,
            ]
        } else if dt.is_int() {
            &[MathFn::Abs, MathFn::Floor, MathFn::Ceil]
        } else {
            &[]
        };
        for &m in fns {
            let args = (0..m.arity() as i64).map(|i| input(dt, i)).collect();
            put(call(m, args), &mut body);
        }
        put(Expr::float_of(f64::NAN, dt), &mut body);
        put(Expr::float_of(f64::NEG_INFINITY, dt), &mut body);
    }
    let mut params: Vec<Buffer> = tys
        .iter()
        .map(|t| buf(["F", "D", "I", "L", "Q", "H", "B"][*t as usize], *t, 8))
        .collect();
    params.extend(outs);
    let t = v("t");
    let fun = func(params, bind(&t, 1, "threadIdx.x", Stmt::seq(body)));
    let src = emit(&fun).unwrap();
    if std::env::var("LOOPFORGE_DUMP_CUDA").is_ok() {
        eprintln!("{}", src);
    }
    for h in [
        "lf_floordiv_i64",
        "lf_floormod_i32",
        "lf_fmin_f64",
        "lf_sub_i32",
        "erff(",
        "erf(",
        "lf_round_f16(erff(lf_f16_to_f32(H[0])))",
        "lf_round_bf16(lf_fmax_f32(lf_bf16_to_f32(B[0]), lf_bf16_to_f32(B[1])))",
        "const unsigned short* __restrict__ H",
        "unsigned short* __restrict__ Ofloat16",
    ] {
        assert!(src.code.contains(h), "{} missing:\n{}", h, src.code);
    }
    compiles(&src);
}

#[test]
fn guards_where_the_launch_exceeds_a_loop() {
    let a = buf("A", DType::F32, 32);
    let sh = buf_in("S", DType::F32, 32, Scope::Shared);
    let (b, t1, t2) = (v("b"), v("t1"), v("t2"));
    let body = bind(
        &b,
        4,
        "blockIdx.x",
        alloc(
            &sh,
            Stmt::seq(vec![
                bind(
                    &t1,
                    32,
                    "threadIdx.x",
                    st(&sh, t1.expr(), ld(&a, t1.expr())),
                ),
                Stmt::Barrier,
                bind(
                    &t2,
                    16,
                    "threadIdx.x",
                    st(&a, t2.expr(), ld(&sh, t2.expr() * 2)),
                ),
            ]),
        ),
    );
    let src = emit(&func(vec![a], body)).unwrap();
    let c = &src.code;
    assert!(
        c.contains("  __shared__ __align__(32) float S[32];\n"),
        "{}",
        c
    );
    assert!(
        c.contains("const long long t1 = threadIdx.x;\n  S[t1] = A[t1];\n"),
        "{}",
        c
    );
    assert!(c.contains("  __syncthreads();\n  if (threadIdx.x < 16) {\n    const long long t2 = threadIdx.x;\n    A[t2] = S[t2 * 2];\n  }\n"), "{}", c);
    assert!(c.contains("__launch_bounds__(32)"), "{}", c);
    assert_eq!(src.launch.dims(&[]).unwrap(), ([4, 1, 1], [32, 1, 1]));
    compiles(&src);
}

#[test]
fn vectors_are_16_byte_accesses_or_lane_by_lane() {
    let (a, c) = (buf("A", DType::F32, 64), buf("C", DType::F32, 64));
    let (t, x) = (v("t"), v("x"));
    let ramp = |base: Expr| Expr::new(ExprNode::Ramp(base, 1, 4));
    let bcast = |e: Expr| Expr::new(ExprNode::Broadcast(e, 4));
    let xv = Var::new("xv", DType::F32);
    let body = bind(
        &t,
        16,
        "threadIdx.x",
        Stmt::Let {
            var: x.clone(),
            value: t.expr() * 4,
            body: Box::new(Stmt::seq(vec![
                Stmt::Let {
                    var: xv.clone(),
                    value: a.load(vec![ramp(x.expr())]),
                    body: Box::new(Stmt::Store {
                        buf: c.clone(),
                        indices: vec![ramp(x.expr())],
                        value: bin(
                            BinOp::Mul,
                            xv.expr(),
                            bcast(Expr::float_of(2.0, DType::F32)),
                        ),
                    }),
                },
                // Reads the buffer it writes, shifted: all lanes are read first.
                Stmt::Store {
                    buf: c.clone(),
                    indices: vec![ramp(x.expr() + 1)],
                    value: c.load(vec![ramp(x.expr())]),
                },
            ])),
        },
    );
    let src = emit(&func(vec![a, c], body)).unwrap();
    let code = &src.code;
    assert!(
        code.contains("const float xv[4] = {A[x], A[x + 1], A[x + 2], A[x + 3]};"),
        "{}",
        code
    );
    // `x` is a multiple of 4: one 16-byte store; the shifted store reads C[x..x+4] as one
    // 16-byte load (all lanes before any store) and writes lane by lane (unaligned).
    assert!(
        code.contains("*reinterpret_cast<float4*>(&C[x]) = make_float4(xv[0] * 2.0f, xv[1] * 2.0f, xv[2] * 2.0f, xv[3] * 2.0f);"),
        "{}",
        code
    );
    assert!(
        code.contains("const float4 C_vec = *reinterpret_cast<const float4*>(&C[x]);"),
        "{}",
        code
    );
    assert!(code.contains("const float C_lane0 = C_vec.x;"), "{}", code);
    assert!(code.contains("C[x + 1 + 3] = C_lane3;"), "{}", code);
    compiles(&src);
}

#[test]
fn copies_move_bits_sixteen_bytes_at_a_time() {
    // f16 copies: a scalar one keeps the bits (no conversion through float), an aligned
    // 8-lane one is one uint4 move, one into a local array stays lane by lane.
    let (a, c) = (buf("A", DType::F16, 64), buf("C", DType::F16, 64));
    let l = buf_in("L", DType::F16, 8, Scope::Local);
    let (t, x) = (v("t"), v("x"));
    let ramp = |base: Expr| Expr::new(ExprNode::Ramp(base, 1, 8));
    let body = bind(
        &t,
        8,
        "threadIdx.x",
        Stmt::Let {
            var: x.clone(),
            value: t.expr() * 8,
            body: Box::new(alloc(
                &l,
                Stmt::seq(vec![
                    st(&c, t.expr(), ld(&a, t.expr() + 1)),
                    Stmt::Store {
                        buf: c.clone(),
                        indices: vec![ramp(x.expr())],
                        value: a.load(vec![ramp(x.expr())]),
                    },
                    Stmt::Store {
                        buf: l.clone(),
                        indices: vec![ramp(Expr::int(0))],
                        value: a.load(vec![ramp(x.expr())]),
                    },
                    st(&c, t.expr(), ld(&l, 3)),
                ]),
            )),
        },
    );
    let src = emit(&func(vec![a, c], body)).unwrap();
    let code = &src.code;
    assert!(code.contains("C[t] = A[t + 1];"), "{}", code);
    assert!(
        code.contains("*reinterpret_cast<uint4*>(&C[x]) = *reinterpret_cast<const uint4*>(&A[x]);"),
        "{}",
        code
    );
    assert!(!code.contains("reinterpret_cast<uint4*>(&L"), "{}", code);
    assert!(code.contains("C[t] = L[3];"), "{}", code);
    compiles(&src);
}

#[test]
fn shared_tiles_filled_from_global_memory_by_asynchronous_copies() {
    // A shared buffer computed by 16-byte copies from global memory, in a `Produce` that
    // does not read it: `cp.async`, and every barrier waits for the copies. When the
    // computation also reads the buffer, the copies stay synchronous.
    let kernel = |self_read: bool| {
        let (a, c) = (buf("A", DType::F32, 64), buf("C", DType::F32, 64));
        let sh = buf_in("S", DType::F32, 64, Scope::Shared);
        let t = v("t");
        let ramp = |base: Expr| Expr::new(ExprNode::Ramp(base, 1, 4));
        let mut produce = vec![Stmt::Store {
            buf: sh.clone(),
            indices: vec![ramp(t.expr() * 4)],
            value: a.load(vec![ramp(t.expr() * 4)]),
        }];
        if self_read {
            produce.push(st(
                &sh,
                t.expr(),
                bin(
                    BinOp::Add,
                    ld(&sh, t.expr()),
                    Expr::float_of(1.0, DType::F32),
                ),
            ));
        }
        let body = bind(
            &t,
            16,
            "threadIdx.x",
            alloc(
                &sh,
                Stmt::seq(vec![
                    Stmt::Produce {
                        name: "S".into(),
                        body: Box::new(Stmt::seq(produce)),
                    },
                    Stmt::Barrier,
                    st(&c, t.expr(), ld(&sh, (t.expr() * 3) % 64)),
                ]),
            ),
        );
        emit(&func(vec![a, c], body)).unwrap()
    };
    let src = kernel(false);
    let code = &src.code;
    assert!(
        code.contains("lf_cp_async16(&S[t * 4], &A[t * 4]);"),
        "{}",
        code
    );
    assert!(
        code.contains("lf_cp_async_wait();\n  __syncthreads();"),
        "{}",
        code
    );
    compiles(&src);
    let src = kernel(true);
    let code = &src.code;
    assert!(!code.contains("lf_cp_async"), "{}", code);
    assert!(
        code.contains(
            "*reinterpret_cast<uint4*>(&S[t * 4]) = *reinterpret_cast<const uint4*>(&A[t * 4]);"
        ),
        "{}",
        code
    );
    compiles(&src);
}

#[test]
fn multi_dimensional_access_is_flattened() {
    let a = Buffer::new(
        "A",
        DType::F32,
        vec![Expr::int(4), Expr::int(8)],
        Scope::Global,
    );
    let t = v("t");
    let body = bind(
        &t,
        4,
        "threadIdx.x",
        Stmt::Store {
            buf: a.clone(),
            indices: vec![t.expr(), Expr::int(3)],
            value: Expr::float_of(1.0, DType::F32),
        },
    );
    let src = emit(&func(vec![a], body)).unwrap();
    assert!(src.code.contains("A[t * 8 + 3] = 1.0f;"), "{}", src.code);
}

#[test]
fn lets_around_the_kernel_and_symbolic_launch() {
    let n = v("n");
    let a = Buffer::new("A", DType::F32, vec![n.expr() * 2], Scope::Global);
    let (m, b, t) = (v("m"), v("b"), v("t"));
    let body = Stmt::Let {
        var: m.clone(),
        value: n.expr() * 2,
        body: Box::new(bind(
            &b,
            n.expr(),
            "blockIdx.x",
            bind(
                &t,
                2,
                "threadIdx.x",
                st(&a, b.expr() * 2 + t.expr(), Expr::float_of(0.0, DType::F32)),
            ),
        )),
    };
    let mut fun = func(vec![a], body);
    fun.shape_vars = vec![n.clone()];
    let src = emit(&fun).unwrap();
    assert!(
        src.code
            .contains("float* __restrict__ A, long long n) {\n  const long long m = n * 2;\n"),
        "{}",
        src.code
    );
    assert_eq!(src.launch.dims(&[7]).unwrap(), ([7, 1, 1], [2, 1, 1]));
    // An extent naming a let inside the kernel resolves through it.
    let (inner, w) = (v("inner"), v("w"));
    let body = bind(
        &b,
        n.expr(),
        "blockIdx.x",
        Stmt::Let {
            var: inner.clone(),
            value: n.expr() + 1,
            body: Box::new(bind(&w, inner.expr(), "threadIdx.x", Stmt::NoOp)),
        },
    );
    let mut fun2 = func(vec![], body);
    fun2.shape_vars = vec![n];
    let src = emit(&fun2).unwrap();
    assert_eq!(src.launch.dims(&[9]).unwrap(), ([9, 1, 1], [10, 1, 1]));
    compiles(&src);
}

#[test]
fn serial_vthread_and_unrolled_loops() {
    let (a, lens) = (buf("A", DType::F32, 64), buf("Lens", DType::I64, 1));
    let (t, vt, u, k) = (v("t"), v("vt"), v("u"), v("k"));
    let body = bind(
        &t,
        2,
        "threadIdx.x",
        Stmt::seq(vec![
            Stmt::for_(
                vt.clone(),
                Expr::int(0),
                Expr::int(2),
                ForKind::ThreadBinding("vthread".into()),
                Stmt::for_(
                    u.clone(),
                    Expr::int(0),
                    Expr::int(4),
                    ForKind::Unrolled,
                    st(
                        &a,
                        vt.expr() * 8 + u.expr(),
                        Expr::float_of(1.0, DType::F32),
                    ),
                ),
            ),
            // A bound read from memory is computed once, before the loop.
            Stmt::for_(
                k.clone(),
                Expr::int(1),
                ld(&lens, 0),
                ForKind::Serial,
                st(&a, k.expr(), Expr::float_of(2.0, DType::F32)),
            ),
        ]),
    );
    let src = emit(&func(vec![a, lens], body)).unwrap();
    let c = &src.code;
    assert!(
        c.contains("for (long long vt = 0; vt < 2; ++vt) {  // vthread"),
        "{}",
        c
    );
    assert!(
        c.contains("#pragma unroll\n    for (long long u = 0; u < 4; ++u) {"),
        "{}",
        c
    );
    assert!(
        c.contains(
            "const long long k_end = Lens[0] + 1;\n    for (long long k = 1; k < k_end; ++k) {"
        ),
        "{}",
        c
    );
    compiles(&src);
}

#[test]
fn allocation_errors() {
    let n = v("n");
    let t = v("t");
    let with = |b: &Buffer, shape_vars: Vec<Var>| {
        let mut fun = func(
            vec![],
            bind(
                &t,
                4,
                "threadIdx.x",
                alloc(b, st(b, 0, Expr::float_of(0.0, DType::F32))),
            ),
        );
        fun.shape_vars = shape_vars;
        emit(&fun)
    };
    let sym = Buffer::new("S", DType::F32, vec![n.expr()], Scope::Shared);
    match with(&sym, vec![n]) {
        Err(Error::Target(m)) => assert!(
            m.contains("shared buffer S has non-constant size n"),
            "{}",
            m
        ),
        other => panic!("{:?}", other),
    }
    match with(&buf("G", DType::F32, 4), vec![]) {
        Err(Error::Target(m)) => assert!(
            m.contains("global buffer G is allocated inside the GPU kernel"),
            "{}",
            m
        ),
        other => panic!("{:?}", other),
    }
    match with(&buf_in("Big", DType::F64, 8192, Scope::Shared), vec![]) {
        Err(Error::Target(m)) => assert!(m.contains("65536 bytes"), "{}", m),
        other => panic!("{:?}", other),
    }
    let local = with(&buf_in("L", DType::F32, 5, Scope::Local), vec![]).unwrap();
    assert!(local.code.contains("  float L[5];\n"), "{}", local.code);
}

#[test]
fn launch_errors() {
    let a = buf("A", DType::F32, 4096);
    let (t, w) = (v("t"), v("w"));
    let body = bind(
        &t,
        2048,
        "threadIdx.x",
        st(&a, t.expr(), Expr::float_of(0.0, DType::F32)),
    );
    match emit(&func(vec![a.clone()], body)) {
        Err(Error::Target(m)) => assert!(m.contains("2048 threads along threadIdx.x"), "{}", m),
        other => panic!("{:?}", other),
    }
    let body = bind(
        &t,
        8,
        "warp.x",
        st(&a, t.expr(), Expr::float_of(0.0, DType::F32)),
    );
    match emit(&func(vec![a.clone()], body)) {
        Err(Error::Target(m)) => assert!(
            m.contains("unknown thread binding thread_binding(warp.x)"),
            "{}",
            m
        ),
        other => panic!("{:?}", other),
    }
    // A thread extent that depends on the block index cannot be launched.
    let body = bind(
        &t,
        8,
        "blockIdx.x",
        bind(
            &w,
            t.expr() + 1,
            "threadIdx.x",
            st(&a, w.expr(), Expr::float_of(0.0, DType::F32)),
        ),
    );
    match emit(&func(vec![a.clone()], body)) {
        Err(Error::Target(m)) => assert!(
            m.contains("depends on t, which is only known inside the kernel"),
            "{}",
            m
        ),
        other => panic!("{:?}", other),
    }
    // A host loop around the kernel: one launch per iteration is not supported.
    let body = Stmt::for_(
        w.clone(),
        Expr::int(0),
        Expr::int(2),
        ForKind::Serial,
        bind(
            &t,
            8,
            "threadIdx.x",
            st(&a, t.expr() + w.expr() * 8, Expr::float_of(0.0, DType::F32)),
        ),
    );
    match emit(&func(vec![a], body)) {
        Err(Error::Target(m)) => assert!(
            m.contains("inside the host loop over w")
                && m.contains("only one kernel per function is supported yet"),
            "{}",
            m
        ),
        other => panic!("{:?}", other),
    }
}

#[test]
fn barrier_that_only_some_threads_reach_is_refused() {
    let a = buf("A", DType::F32, 32);
    let (t1, t2) = (v("t1"), v("t2"));
    let body = Stmt::seq(vec![
        bind(
            &t1,
            32,
            "threadIdx.x",
            st(&a, t1.expr(), Expr::float_of(1.0, DType::F32)),
        ),
        bind(
            &t2,
            16,
            "threadIdx.x",
            Stmt::seq(vec![
                Stmt::Barrier,
                st(&a, t2.expr(), Expr::float_of(2.0, DType::F32)),
            ]),
        ),
    ]);
    // Two loop nests at the top: one kernel each would be needed.
    assert!(
        matches!(emit(&func(vec![a.clone()], body.clone())), Err(Error::Target(m)) if m.contains("only one kernel"))
    );
    let b = v("b");
    match emit(&func(vec![a], bind(&b, 1, "blockIdx.x", body))) {
        Err(Error::Target(m)) => assert!(
            m.contains(
                "would run only in the threads with threadIdx.x < 16 (loop t2, launched with 32)"
            ),
            "{}",
            m
        ),
        other => panic!("{:?}", other),
    }
}

#[test]
fn kernels_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CudaModule>();
    check::<crate::Kernel>();
}

#[test]
fn architectures() {
    assert_eq!(ptx_arch("sm_90").unwrap(), "compute_90");
    assert_eq!(ptx_arch("compute_80").unwrap(), "compute_80");
    assert_eq!(ptx_arch("90a").unwrap(), "compute_90a");
    assert!(matches!(ptx_arch("sm_9"), Err(Error::Target(_))));
    assert!(matches!(ptx_arch("turing"), Err(Error::Target(_))));
}
