//! The AVX-512 paths of the CPU intrinsics (`gemm_f32` / `gemm_f32_k3`, `dot_f32`,
//! `reduce_sum_f32`, `reduce_max_f32`, `exp_f32`, `exp_sub_f32`, `activation_f32`)
//! against their declared semantics, on random operands:
//! natively where the CPU has AVX-512F, else under Bochs (`scripts/emulate_x86.py`, the
//! `bochscpu` Python package): this process writes its memory image and the call, the
//! emulator runs the call on a CPU with AVX-512 and hands back the output. Skips,
//! printing why, where neither can run (fails instead with LOOPFORGE_REQUIRE_EMULATOR).
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use loopforge::intrinsics::{activation_f32_avx512_entry, activation_f32_eval, Activation};
use loopforge::intrinsics::{
    dot_f32_avx512_entry, exp_f32_avx512_entry, exp_f32_eval, exp_sub_f32_avx512_entry,
    exp_sub_f32_eval, gemm_f32_k3_avx512_entry, reduce_max_f32_avx512_entry,
    reduce_sum_f32_avx512_entry, CpuPath,
};
use std::process::Command;

/// One call: the operands' shapes and strides (in elements; `C`'s columns contiguous or
/// not), the mode (update or compute).
#[derive(Debug, Clone, Copy)]
struct Case {
    m: usize,
    n: usize,
    k: [usize; 3],
    /// `A`'s row stride 1 (a packed panel, reduction steps `m` apart) or row-major.
    packed_a: bool,
    /// `C` stored transposed (column stride > 1: the row-major copy path).
    c_transposed: bool,
    accumulate: bool,
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Floats of sentinel on each side of an output: a write past the output (a wrong mask
/// or stride) changes one, which the checks see, natively and under the emulator.
const GUARD: usize = 16;
/// The sentinel: a NaN no computation produces.
const SENTINEL: u32 = 0x7fc0_dead;

/// An output buffer with [`GUARD`] sentinels on each side.
struct Guarded(Vec<f32>);

impl Guarded {
    fn new(values: &[f32]) -> Guarded {
        let guard = [f32::from_bits(SENTINEL); GUARD];
        Guarded([&guard[..], values, &guard[..]].concat())
    }
    /// The address of the output proper.
    fn ptr(&self) -> i64 {
        self.0[GUARD..].as_ptr() as i64
    }
    /// The output proper.
    fn inner(&self) -> &[f32] {
        &self.0[GUARD..self.0.len() - GUARD]
    }
    /// Panics, naming `what`, if a sentinel changed.
    fn check_guards(&self, what: &str) {
        let n = self.0.len();
        for i in (0..GUARD).chain(n - GUARD..n) {
            assert_eq!(
                self.0[i].to_bits(),
                SENTINEL,
                "{}: the call wrote outside its output (guard float {} of {})",
                what,
                i,
                n
            );
        }
    }
}

/// The operands of `case`, the words of its call, and the expected `C` from the declared
/// semantics `C[i, j] (+)= sum_{k0, k1, k2} A[i, k0, k1, k2] * B[k0, k1, k2, j]`.
struct Setup {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Guarded,
    want: Vec<f32>,
    words: Vec<i64>,
}

fn setup(case: Case, seed: u64) -> Setup {
    let Case { m, n, k, .. } = case;
    let kk = k[0] * k[1] * k[2];
    // A: element (i, kf) where kf is the flattened reduction index.
    let (a_row, a_k) = if case.packed_a { (1, m) } else { (kk, 1) };
    let a = values(m * kk, seed);
    // B: row-major over (kf, j) with a row padded to n + 3 (not a multiple of 16).
    let ldb = n + 3;
    let b = values(kk * ldb, seed + 1);
    let (c_row, c_col) = if case.c_transposed { (1, m) } else { (n, 1) };
    let c = Guarded::new(&values(m * n, seed + 2));
    let mut want = c.inner().to_vec();
    for i in 0..m {
        for j in 0..n {
            let mut s = if case.accumulate {
                want[i * c_row + j * c_col]
            } else {
                0.0
            };
            for kf in 0..kk {
                s += a[i * a_row + kf * a_k] * b[kf * ldb + j];
            }
            want[i * c_row + j * c_col] = s;
        }
    }
    let (k1k2, k2) = ((k[1] * k[2]) as i64, k[2] as i64);
    let words = vec![
        case.accumulate as i64,
        a.as_ptr() as i64,
        b.as_ptr() as i64,
        c.ptr(),
        a_row as i64,
        k1k2 * a_k as i64,
        k2 * a_k as i64,
        a_k as i64,
        k1k2 * ldb as i64,
        k2 * ldb as i64,
        ldb as i64,
        1,
        c_row as i64,
        c_col as i64,
        m as i64,
        n as i64,
        k[0] as i64,
        k[1] as i64,
        k[2] as i64,
    ];
    Setup {
        a,
        b,
        c,
        want,
        words,
    }
}

fn bytes_of<T>(v: &[T]) -> (u64, &[u8]) {
    let p = v.as_ptr() as *const u8;
    // Safety: a plain view of initialized memory.
    (p as u64, unsafe {
        std::slice::from_raw_parts(p, std::mem::size_of_val(v))
    })
}

/// The readable mappings of the test binary and the shared libraries it loaded: the code
/// the call may run and the constants it may read.
fn image() -> Vec<(u64, &'static [u8])> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let exe = std::env::current_exe().expect("the test binary's path");
    let exe = exe.to_string_lossy();
    let mut out = vec![];
    for line in maps.lines() {
        // address perms offset dev inode path (the path may hold spaces)
        let f: Vec<&str> = line.splitn(6, ' ').collect();
        let path = f.get(5).map(|p| p.trim_start()).unwrap_or("");
        let ours = path == exe || path.contains(".so");
        if !ours || !f[1].starts_with('r') {
            continue;
        }
        let (lo, hi) = f[0].split_once('-').unwrap();
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        // Safety: a readable mapping of this process, alive while the test runs (nothing
        // here unloads libraries).
        out.push((lo, unsafe {
            std::slice::from_raw_parts(lo as *const u8, (hi - lo) as usize)
        }));
    }
    out
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/emulate_x86.py");

/// Why the emulator cannot run here, if it cannot (the script's `--probe`: the package
/// imports, with its glibc shim where needed).
fn emulator_missing() -> Option<String> {
    match Command::new("python3").arg(SCRIPT).arg("--probe").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "the emulator cannot run ({}; pip install bochscpu-python): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("python3 cannot run: {}", e)),
    }
}

/// A host function's AVX-512 entry (the words of the JIT's call).
type Entry = unsafe extern "C" fn(*const i64);

/// Where the AVX-512 paths run: natively, under the emulator, or (`Err`, why) nowhere.
/// `LOOPFORGE_EMULATE_AVX512` (any value) runs them under the emulator on an AVX-512 CPU
/// too, as on the CI machines without one.
fn runner() -> Result<bool, String> {
    if std::is_x86_feature_detected!("avx512f")
        && std::env::var_os("LOOPFORGE_EMULATE_AVX512").is_none()
    {
        return Ok(true);
    }
    match emulator_missing() {
        None => Ok(false),
        Some(why) => {
            assert!(
                std::env::var_os("LOOPFORGE_REQUIRE_EMULATOR").is_none(),
                "LOOPFORGE_REQUIRE_EMULATOR is set, but {}",
                why
            );
            Err(format!("this CPU lacks AVX-512F and {}", why))
        }
    }
}

/// Call `entry(words)` on AVX-512: directly when `native`, else under the emulator with
/// this process's image, `inputs` (the buffers the call reads, and `words`) and `out`
/// (the buffer it writes, read back after the call).
fn call_avx512(
    native: bool,
    entry: Entry,
    words: &[i64],
    inputs: &[&[f32]],
    out: &mut [f32],
    tag: &str,
) {
    if native {
        // Safety: the words describe live buffers; the CPU has AVX-512F.
        unsafe { entry(words.as_ptr()) };
        return;
    }
    let dir = std::env::temp_dir().join(format!("lf_avx512_{}_{}", std::process::id(), tag));
    std::fs::create_dir_all(&dir).unwrap();
    let (dump, result) = (dir.join("dump"), dir.join("out"));
    let mut buf = vec![];
    let put = |buf: &mut Vec<u8>, x: u64| buf.extend_from_slice(&x.to_le_bytes());
    put(&mut buf, entry as *const () as u64);
    put(&mut buf, words.as_ptr() as u64);
    let mut segs: Vec<(u64, &[u8], bool)> =
        image().into_iter().map(|(a, b)| (a, b, false)).collect();
    for v in inputs {
        let (a, b) = bytes_of(v);
        segs.push((a, b, false));
    }
    let (wa, wb) = bytes_of(words);
    segs.push((wa, wb, false));
    let (oa, ob) = bytes_of(out);
    segs.push((oa, ob, true));
    put(&mut buf, segs.len() as u64);
    for (a, b, w) in &segs {
        put(&mut buf, *a);
        put(&mut buf, b.len() as u64);
        put(&mut buf, *w as u64);
        buf.extend_from_slice(b);
    }
    std::fs::write(&dump, &buf).unwrap();
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .arg(&dump)
        .arg(&result)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    // A kernel that never returns would loop in the emulator: give it two minutes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().expect("wait for python3").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{}: the emulated call did not return within 120 s", tag);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("python3's output");
    assert!(
        o.status.success(),
        "{}: the emulator failed ({}): {}",
        tag,
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let got = std::fs::read(&result).unwrap();
    assert_eq!(got.len(), out.len() * 4, "{}", tag);
    for (x, chunk) in out.iter_mut().zip(got.chunks_exact(4)) {
        *x = f32::from_le_bytes(chunk.try_into().unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn check(s: &Setup, case: Case) {
    s.c.check_guards(&format!("{:?}", case));
    for (idx, (g, w)) in s.c.inner().iter().zip(&s.want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{:?}: C[{}] = {}, want {}",
            case,
            idx,
            g,
            w
        );
    }
}

#[test]
fn avx512_gemm_tiles_match_the_declared_semantics() {
    // Row counts across the 12-row blocks and column counts across the 16- and 32-wide
    // blocks (partial ones through masks), one and three reduction axes, packed and
    // row-major A, C along rows or transposed, both modes; whole 12 x 32 blocks of a
    // packed A updating C (24 x 64 over three reduction axes, 12 x 96) and computing it
    // (24 x 32).
    let mut cases = vec![];
    for (i, &(m, n)) in [
        (6, 16),
        (12, 32),
        (1, 1),
        (13, 33),
        (7, 50),
        (24, 16),
        (5, 17),
        (3, 64),
        // Whole 12 x 32 blocks of a packed A (the kernel with constant offsets that adds
        // C after the reduction): 24 x 64 and 12 x 96 updating, 24 x 32 computing; 20 x
        // 40 and 18 x 24 (row-major A) between them.
        (24, 64),
        (20, 40),
        (12, 96),
        (18, 24),
        (24, 32),
    ]
    .iter()
    .enumerate()
    {
        let k = if i % 3 == 2 { [2, 3, 4] } else { [1, 1, 5 + i] };
        cases.push(Case {
            m,
            n,
            k,
            packed_a: i % 2 == 0,
            c_transposed: i == 3 || i == 6,
            // 24 x 32 (the last) computes.
            accumulate: i % 4 != 1 && i != 12,
        });
    }
    // And random ones (a fixed seed: the same cases on every run). A transposed C goes
    // through a row-major copy of the tile, on the heap above 1024 floats: the emulator
    // has no allocator, so transposed tiles stay below that.
    let r = values(12 * 8, 99);
    let pick = |x: f32, hi: usize| 1 + ((x + 1.0) * 0.5 * hi as f32) as usize % hi;
    for c in r.chunks_exact(8) {
        let (m, n) = (pick(c[0], 30), pick(c[1], 70));
        cases.push(Case {
            m,
            n,
            k: [pick(c[2], 2), pick(c[3], 3), pick(c[4], 9)],
            packed_a: c[5] > 0.0,
            c_transposed: c[6] > 0.0 && m * n <= 1024,
            accumulate: c[7] > -0.3,
        });
    }
    let native = match runner() {
        Ok(native) => native,
        Err(why) => return eprintln!("skipped: {}", why),
    };
    // One call per case: a failure's report names its case.
    for (i, case) in cases.into_iter().enumerate() {
        let mut s = setup(case, 10 + i as u64);
        let tag = format!("gemm{}", i);
        call_avx512(
            native,
            gemm_f32_k3_avx512_entry,
            &s.words,
            &[&s.a, &s.b],
            &mut s.c.0,
            &tag,
        );
        check(&s, case);
    }
}

/// `dot_f32`, `reduce_sum_f32`, `reduce_max_f32`, `exp_f32` and `exp_sub_f32` on their
/// AVX-512 paths: lengths around the 16-lane vectors and the 64-element steps (masked
/// tails), strided operands (the portable fallback inside the AVX-512 entry), both modes
/// of the reductions, a NaN in the maximum's input. `exp` agrees bit for bit with the
/// AVX2+FMA path where this CPU has it (the same operations on wider vectors), else
/// within the 1-ulp bound against `f64::exp`; `exp_sub` with `exp` of the differences.
#[test]
fn avx512_dot_sum_and_exp_match_their_declarations() {
    let native = match runner() {
        Ok(native) => native,
        Err(why) => return eprintln!("skipped: {}", why),
    };
    for (i, &(n, stride)) in [
        (1, 1),
        (15, 1),
        (16, 1),
        (17, 1),
        (64, 1),
        (100, 1),
        (203, 1),
        (37, 3),
    ]
    .iter()
    .enumerate()
    {
        let a = values(n * stride, 50 + i as u64);
        let b = values(n * stride, 60 + i as u64);
        let (dot, sum) = (0..n).fold((0f64, 0f64), |(d, s), k| {
            let (x, y) = (a[k * stride] as f64, b[k * stride] as f64);
            (d + x * y, s + x)
        });
        let mode = (i % 2) as i64; // 0 compute, 1 update (adds to the output's 0.5)
        let base = if mode == 1 { 0.5 } else { 0.0 };
        let mut c = Guarded::new(&[0.5]);
        let words = [
            mode,
            a.as_ptr() as i64,
            b.as_ptr() as i64,
            c.ptr(),
            stride as i64,
            stride as i64,
            n as i64,
        ];
        let tag = format!("dot{}", i);
        call_avx512(
            native,
            dot_f32_avx512_entry,
            &words,
            &[&a, &b],
            &mut c.0,
            &tag,
        );
        c.check_guards(&tag);
        let (got, want) = (c.inner()[0], (base + dot) as f32);
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + n as f32),
            "dot n={} stride={}: {} want {}",
            n,
            stride,
            got,
            want
        );
        let mut c = Guarded::new(&[0.5]);
        let words = [mode, a.as_ptr() as i64, c.ptr(), stride as i64, n as i64];
        let tag = format!("sum{}", i);
        call_avx512(
            native,
            reduce_sum_f32_avx512_entry,
            &words,
            &[&a],
            &mut c.0,
            &tag,
        );
        c.check_guards(&tag);
        let (got, want) = (c.inner()[0], (base + sum) as f32);
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + n as f32),
            "sum n={} stride={}: {} want {}",
            n,
            stride,
            got,
            want
        );

        // The maximum (exact; update takes the maximum with the output's 0.5), every
        // third case with a NaN among the elements.
        let mut am = a.clone();
        if i % 3 == 2 {
            am[(n / 2) * stride] = f32::NAN;
        }
        let mut c = Guarded::new(&[0.5]);
        let words = [mode, am.as_ptr() as i64, c.ptr(), stride as i64, n as i64];
        let tag = format!("max{}", i);
        call_avx512(
            native,
            reduce_max_f32_avx512_entry,
            &words,
            &[&am],
            &mut c.0,
            &tag,
        );
        c.check_guards(&tag);
        let want = (0..n)
            .map(|k| am[k * stride])
            .fold(if mode == 1 { 0.5 } else { f32::NEG_INFINITY }, f32::max);
        let got = c.inner()[0];
        if i % 3 == 2 {
            assert!(got.is_nan(), "max n={} with a NaN: {}", n, got);
        } else {
            assert_eq!(got, want, "max n={} stride={} mode={}", n, stride, mode);
        }

        // exp over [-104, 89] plus the special values, written with stride 2 when the
        // input is strided.
        let mut x: Vec<f32> = a.iter().map(|v| v * 96.0 - 7.0).collect();
        if n > 4 {
            x[0] = f32::NAN;
            x[stride] = 89.0;
            x[2 * stride] = -104.0;
            x[3 * stride] = 0.0;
        }
        let sy = if stride > 1 { 2 } else { 1 };
        let mut yg = Guarded::new(&vec![-1f32; n * sy]);
        let words = [
            0,
            x.as_ptr() as i64,
            yg.ptr(),
            stride as i64,
            sy as i64,
            n as i64,
        ];
        let tag = format!("exp{}", i);
        call_avx512(native, exp_f32_avx512_entry, &words, &[&x], &mut yg.0, &tag);
        yg.check_guards(&tag);
        let y = yg.inner();
        let mut avx2 = vec![-1f32; n * sy];
        let same_as_avx2 = exp_f32_eval(&x, stride, &mut avx2, sy, n, CpuPath::Avx2Fma).is_ok();
        for k in 0..n {
            let (xv, got) = (x[k * stride], y[k * sy]);
            if same_as_avx2 {
                assert_eq!(
                    got.to_bits(),
                    avx2[k * sy].to_bits(),
                    "exp({}) = {}, AVX2 path {}",
                    xv,
                    got,
                    avx2[k * sy]
                );
            }
            let want = (xv as f64).exp() as f32;
            if xv.is_nan() {
                assert!(got.is_nan(), "exp(NaN) = {}", got);
            } else {
                let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
                assert!(
                    ulp <= 1 || want == got,
                    "exp({}) = {}, want {} ({} ulp)",
                    xv,
                    got,
                    want,
                    ulp
                );
            }
        }
        // Elements between strided outputs are untouched.
        for (k, v) in y.iter().enumerate().filter(|(k, _)| k % sy != 0) {
            assert_eq!(*v, -1.0, "exp wrote y[{}]", k);
        }

        // exp(x - s): the AVX2 path's results bit for bit where this CPU has it, else
        // within 1 ulp of exp of the rounded difference.
        let shift = [x[stride.min(n - 1)] * 0.5 - 1.25];
        let mut yg = Guarded::new(&vec![-1f32; n * sy]);
        let words = [
            0,
            x.as_ptr() as i64,
            shift.as_ptr() as i64,
            yg.ptr(),
            stride as i64,
            sy as i64,
            n as i64,
        ];
        let tag = format!("exp_sub{}", i);
        call_avx512(
            native,
            exp_sub_f32_avx512_entry,
            &words,
            &[&x, &shift],
            &mut yg.0,
            &tag,
        );
        yg.check_guards(&tag);
        let mut avx2 = vec![-1f32; n * sy];
        let same_as_avx2 =
            exp_sub_f32_eval(&x, stride, shift[0], &mut avx2, sy, n, CpuPath::Avx2Fma).is_ok();
        for k in 0..n {
            let (d, got) = (x[k * stride] - shift[0], yg.inner()[k * sy]);
            if d.is_nan() {
                assert!(got.is_nan(), "exp_sub of NaN = {}", got);
            } else if same_as_avx2 {
                assert_eq!(
                    got.to_bits(),
                    avx2[k * sy].to_bits(),
                    "exp({}) = {}",
                    d,
                    got
                );
            } else {
                let want = (d as f64).exp() as f32;
                let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
                assert!(
                    ulp <= 1 || want == got,
                    "exp({}) = {}, want {}",
                    d,
                    got,
                    want
                );
            }
        }
    }
}

/// `activation_f32` on its AVX-512 path over 2-D tiles, every activation: contiguous
/// rows (one run, masked tail), rows with a gap between them and a transposed read (the
/// lane buffer). Equal to the AVX2 path bit for bit where this CPU has it, else (sigmoid
/// and SiLU) within 3 ulp of `1 / (1 + exp(-x))` (times `x`) in f64, (the others) within
/// 1e-6 of the portable path.
#[test]
fn avx512_activations_match_the_avx2_path() {
    let native = match runner() {
        Ok(native) => native,
        Err(why) => return eprintln!("skipped: {}", why),
    };
    // (rows, cols, X's strides, Y's strides)
    for (i, &(rows, cols, sx, sy)) in [
        (3usize, 37usize, (37usize, 1usize), (37usize, 1usize)),
        (2, 80, (90, 1), (80, 1)),
        (5, 7, (1, 5), (7, 1)),
    ]
    .iter()
    .enumerate()
    {
        let len = |s: (usize, usize)| (rows - 1) * s.0 + (cols - 1) * s.1 + 1;
        let x: Vec<f32> = values(len(sx), 70 + i as u64)
            .iter()
            .map(|v| v * 40.0)
            .collect();
        for f in Activation::ALL {
            let entry: Entry = activation_f32_avx512_entry(f);
            let mut yg = Guarded::new(&vec![-1f32; len(sy)]);
            let words = [
                0,
                x.as_ptr() as i64,
                yg.ptr(),
                sx.0 as i64,
                sx.1 as i64,
                sy.0 as i64,
                sy.1 as i64,
                rows as i64,
                cols as i64,
            ];
            // Tags name the files of a call: unique across the tests, which run at once.
            let tag = format!("activation_{}{}", f.name(), i);
            call_avx512(native, entry, &words, &[&x], &mut yg.0, &tag);
            yg.check_guards(&tag);
            for r in 0..rows {
                let xr: Vec<f32> = (0..cols).map(|c| x[r * sx.0 + c * sx.1]).collect();
                let mut avx2 = vec![0f32; cols];
                let same = activation_f32_eval(f, &xr, &mut avx2, CpuPath::Avx2Fma).is_ok();
                for c in 0..cols {
                    let got = yg.inner()[r * sy.0 + c * sy.1];
                    if same {
                        assert_eq!(got.to_bits(), avx2[c].to_bits(), "{}({})", f.name(), xr[c]);
                    } else if matches!(f, Activation::Sigmoid | Activation::Silu) {
                        let v = xr[c] as f64;
                        let s = 1.0 / (1.0 + (-v).exp());
                        let want = if f == Activation::Silu { v * s } else { s } as f32;
                        let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
                        assert!(ulp <= 3, "{}({}) = {}, want {}", f.name(), xr[c], got, want);
                    } else {
                        let mut one = [0f32];
                        activation_f32_eval(f, &xr[c..c + 1], &mut one, CpuPath::Portable).unwrap();
                        let tol = 1e-6 * one[0].abs().max(1.0);
                        assert!(
                            (got - one[0]).abs() <= tol,
                            "{}({}) = {}, portable {}",
                            f.name(),
                            xr[c],
                            got,
                            one[0]
                        );
                    }
                }
            }
        }
    }
}
