//! Loops written so the compiler vectorises them, compiled for AVX-512, for AVX2 + FMA and for
//! the baseline (SSE2), the widest the CPU has chosen at run time. Every operation is spelt out
//! in order (no fused multiply-adds the source does not ask for, sums in fixed lanes), so each
//! width gives the same bits.

/// `e^x` for `x ≤ 0` (larger inputs are taken as 0), within 2 ulp of the true value:
/// Cody–Waite reduction `x = n·ln 2 + r`, a degree-6 polynomial for `e^r` (Cephes' `expf`
/// coefficients) and `2^n` built from its exponent bits. Below `ln` of the smallest normal
/// float it returns 0, where the C library would return a subnormal.
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const LOWEST: f32 = -87.33;
    let clamped = x.clamp(LOWEST, 0.0);
    // Round to the nearest integer with the 1.5·2²³ trick: no rounding instruction needed,
    // and the integer itself sits in the low bits of `shifted` (no float-to-int conversion,
    // which Rust's saturating `as` would make a scalar loop).
    const ROUND: f32 = 12_582_912.0;
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // n ∈ [-126, 0], so n + 127 is a normal exponent.
    let exponent = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let two_n = f32::from_bits(exponent << 23);
    let value = e_r * two_n;
    if x.is_nan() {
        x
    } else if x < LOWEST {
        0.0
    } else {
        value
    }
}

macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident$(<$($g:ident: $bound:path),*>)?($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        pub(super) fn $name$(<$($g: $bound),*>)?($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body$(<$($g: $bound),*>)?($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn widest$(<$($g: $bound),*>)?($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn wide$(<$($g: $bound),*>)?($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has just been found to support the enabled features
                    // (every AVX-512 processor has AVX2 and FMA).
                    return unsafe { widest($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has just been found to support the enabled features.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

dispatch! {
    /// `v = f(v)` for every element.
    fn map<F: Fn(f32) -> f32>(values: &mut [f32], f: F) {
        for v in values.iter_mut() {
            *v = f(*v);
        }
    }
}

dispatch! {
    /// `v = f(v, o)` element by element.
    fn zip<F: Fn(f32, f32) -> f32>(values: &mut [f32], other: &[f32], f: F) {
        for (v, o) in values.iter_mut().zip(other) {
            *v = f(*v, *o);
        }
    }
}

/// Sums in eight interleaved lanes (vectorisable, and the same order on every machine).
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let full = values.len() / 8 * 8;
    for start in (0..full).step_by(8) {
        for (lane, acc) in lanes.iter_mut().enumerate() {
            *acc += term(start + lane);
        }
    }
    let mut total = lanes.iter().sum::<f32>();
    for i in full..values.len() {
        total += term(i);
    }
    total
}

dispatch! {
    /// One softmax row, in place.
    fn softmax_row(row: &mut [f32]) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Every position masked: Burn's composition gives NaN here too.
            row.iter_mut().for_each(|v| *v = f32::NAN);
            return;
        }
        for v in row.iter_mut() {
            *v = exp_nonpositive(*v - max);
        }
        let total = lane_sum(row, |i| row[i]);
        let inverse = 1.0 / total;
        for v in row.iter_mut() {
            *v *= inverse;
        }
    }
}

dispatch! {
    /// One row of the softmax backward pass, `g = y ⊙ (g − ⟨g, y⟩)`, in place over `g`.
    fn softmax_backward_row(grad: &mut [f32], output: &[f32]) {
        let dot = lane_sum(grad, |i| grad[i] * output[i]);
        for (g, y) in grad.iter_mut().zip(output) {
            *g = y * (*g - dot);
        }
    }
}

dispatch! {
    /// `Σ v` over one slice.
    fn sum(values: &[f32]) -> f32 {
        lane_sum(values, |i| values[i])
    }
}

dispatch! {
    /// `Σ a·b` over two slices of one length.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        lane_sum(a, |i| a[i] * b[i])
    }
}

dispatch! {
    /// `Σ (v − mean)²` over one slice.
    fn squared_deviation_sum(values: &[f32], mean: f32) -> f32 {
        lane_sum(values, |i| (values[i] - mean) * (values[i] - mean))
    }
}

dispatch! {
    /// `(Σ g, Σ g·x̂)` over one slice, `x̂ = (x − mean)·inverse_std`.
    fn gradient_sums(grad: &[f32], x: &[f32], mean: f32, inverse_std: f32) -> (f32, f32) {
        let weighted = lane_sum(grad, |i| grad[i] * ((x[i] - mean) * inverse_std));
        (lane_sum(grad, |i| grad[i]), weighted)
    }
}

dispatch! {
    /// `out = x·scale + shift`.
    fn affine(out: &mut [f32], x: &[f32], scale: f32, shift: f32) {
        for (o, x) in out.iter_mut().zip(x) {
            *o = x * scale + shift;
        }
    }
}

dispatch! {
    /// One channel slice of the batch norm's input gradient, in place over `grad`:
    /// `g = k·(g − mean_grad − x̂·mean_weighted)`, `x̂ = (x − mean)·inverse_std`.
    fn batch_norm_input_grad(
        grad: &mut [f32],
        x: &[f32],
        mean: f32,
        inverse_std: f32,
        k: f32,
        mean_grad: f32,
        mean_weighted: f32
    ) {
        for (g, x) in grad.iter_mut().zip(x) {
            let normalised = (x - mean) * inverse_std;
            *g = k * (*g - mean_grad - normalised * mean_weighted);
        }
    }
}
