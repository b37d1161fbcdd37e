"""Derive the f32 coefficients of the generated code's inline `erf` (src/codegen_cpu/vmath.rs).

Two least-squares fits of relative error (iteratively reweighted towards the largest
errors, about minimax), in float64, printed as f32:
- ERF_A: erf(x) / x as a polynomial of degree 6 in x^2 on [0, 1];
- ERF_B: erfc(x) * exp(x^2) as a polynomial of degree 8 in 1 / x on [1, 4] (beyond 4,
  erf(x) rounds to 1 in f32).
Then the f32 evaluation (Horner with fused multiply-adds, exp correctly rounded) is
checked against math.erf over [0, 4.5]; the Rust test `codegen_cpu::tests_vmath`
measures the generated code itself (at most 2 ulp with FMA).

Usage: python3 scripts/fit_erf.py   (numpy)
"""
import math

import numpy as np


def refit(u, f, deg, iters=30):
    """Coefficients (highest degree first) of a degree-`deg` fit of f(u), relative error."""
    w = 1 / np.abs(f)
    c = None
    for _ in range(iters + 1):
        v = np.vander(u, deg + 1)
        c, *_ = np.linalg.lstsq(v * w[:, None], f * w, rcond=None)
        e = np.abs(np.polyval(c, u) - f) / np.abs(f)
        w = w * (1 + 50 * e / e.max())
    return c


def main():
    erf = np.vectorize(math.erf)
    erfc = np.vectorize(math.erfc)
    x = np.linspace(1e-6, 1, 20001)
    a = refit(x * x, erf(x) / x, 6)
    x = np.linspace(1, 4, 30001)
    b = refit(1 / x, erfc(x) * np.exp(x * x), 8)
    f32 = np.float32
    a32, b32 = [f32(v) for v in a], [f32(v) for v in b]
    print("ERF_A =", [repr(float(v)) for v in a32])
    print("ERF_B =", [repr(float(v)) for v in b32])

    def fma(p, q, r):
        return f32(np.float64(p) * np.float64(q) + np.float64(r))

    def horner(c, t):
        p = c[0]
        for v in c[1:]:
            p = fma(p, t, v)
        return p

    worst = (0, 0.0)
    for v in np.concatenate([np.linspace(0, 4.5, 200001), np.logspace(-30, 0, 2000)]):
        z = f32(v)
        z2 = f32(z * z)
        if z < 1:
            r = f32(horner(a32, z2) * z)
        else:
            e = f32(math.exp(-float(z2)))
            r = f32(f32(1) - f32(e * horner(b32, f32(f32(1) / z))))
        want = f32(math.erf(float(z)))
        d = abs(int(np.array(r).view(np.int32)) - int(np.array(want).view(np.int32)))
        worst = max(worst, (d, float(z)))
    print("f32 evaluation: at most %d ulp (at %g)" % worst)


if __name__ == "__main__":
    main()
