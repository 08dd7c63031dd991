//! Fused operations: QuickGELU and the softmax over the last dimension, each one node of the
//! autodiff graph with a hand-written backward pass.
//!
//! Why they exist: of a CLIP transformer's elementwise work, these two touch the biggest tensors
//! of a training step (the MLP's hidden activations and every head's attention scores). Burn
//! builds them from primitive operations — QuickGELU from a scale, a sigmoid and a product;
//! softmax from a maximum, a difference, an exponential, a sum and a quotient — and records each
//! for the backward pass, which then reads and writes the same tensors a dozen times; on the CPU
//! backend (burn-flex) the exponentials are single-threaded loops over the C library's scalar
//! `expf`. Here each is one pass forward and one backward, split over rayon's threads, with an
//! exponential the compiler vectorises: that took a quarter off a demo-ViT training step.
//!
//! The operations are a Burn backend extension: the CPU backend gets the kernels below, any other
//! backend (wgpu) the composition Burn itself would run, and autodiff wraps either with
//!
//! ```text
//! quick_gelu(x) = x·σ(1.702x)    quick_gelu'(x) = σ(1.702x) + 1.702·x·σ(1.702x)·(1 − σ(1.702x))
//! y = softmax(x), last axis      ∂L/∂x = y ⊙ (g − ⟨g, y⟩)   (g = ∂L/∂y; one dot product a row)
//! ```

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Cube, DType, Dispatch, Flex, Scalar, TensorMetadata, backend_extension,
};
use burn::tensor::{Bytes, Tensor};
use rayon::prelude::*;

/// The QuickGELU slope: `x·σ(1.702x)` approximates GELU (OpenAI's CLIP activation).
const QUICK_GELU_SLOPE: f32 = 1.702;

/// `x·σ(1.702x)` elementwise.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::quick_gelu(x.into_dispatch()))
}

/// Softmax over the last dimension.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::softmax_last(x.into_dispatch()))
}

/// The fused operations and their backward passes. The default bodies are Burn's own
/// compositions, used by every backend without a kernel of its own.
#[backend_extension(Flex, Cube, Autodiff)]
pub trait FusedOps: Backend {
    /// `x·σ(1.702x)`.
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::quick_gelu::<Self>(x)
    }

    /// The input gradient of [`FusedOps::quick_gelu`] given its input and output gradient.
    fn quick_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::quick_gelu_backward::<Self>(x, grad)
    }

    /// Softmax over the last dimension.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::softmax_last::<Self>(x)
    }

    /// The input gradient of [`FusedOps::softmax_last`] given its output and output gradient.
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::softmax_last_backward::<Self>(y, grad)
    }
}

impl FusedOps for Cube {}

impl FusedOps for Flex {
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return composed::quick_gelu::<Self>(x);
        }
        map_f32(x, |x| x * sigmoid(QUICK_GELU_SLOPE * x))
    }

    fn quick_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return composed::quick_gelu_backward::<Self>(x, grad);
        }
        zip_f32(grad, x, |g, x| {
            let s = sigmoid(QUICK_GELU_SLOPE * x);
            g * (s + QUICK_GELU_SLOPE * x * s * (1.0 - s))
        })
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return composed::softmax_last::<Self>(x);
        }
        rows_f32(x, None, |row, _| kernels::softmax_row(row))
    }

    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if y.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return composed::softmax_last_backward::<Self>(y, grad);
        }
        rows_f32(grad, Some(y), |g, y| {
            kernels::softmax_backward_row(g, y.expect("softmax output"))
        })
    }
}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        /// Keeps the input; the backward pass recomputes the sigmoid from it.
        #[derive(Debug)]
        struct QuickGeluBackward;

        impl<B: FusedOps> Backward<B, 1> for QuickGeluBackward {
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let input = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::quick_gelu_backward(input, grad)
                });
            }
        }

        match QuickGeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                prep.finish(input.clone(), B::quick_gelu(input))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::quick_gelu(x.into_primitive())),
        }
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        /// Keeps the output, all the backward pass needs.
        #[derive(Debug)]
        struct SoftmaxBackward;

        impl<B: FusedOps> Backward<B, 1> for SoftmaxBackward {
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let output = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::softmax_last_backward(output, grad)
                });
            }
        }

        match SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The backward pass needs only the output, so the scores' buffer can take it.
                let output = B::softmax_last(x.into_primitive());
                prep.finish(output.clone(), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.into_primitive())),
        }
    }
}

/// Burn's own compositions, for backends without a kernel and for dtypes the kernels skip.
mod composed {
    use super::*;

    fn scalar<B: Backend>(like: &FloatTensor<B>, value: f32) -> Scalar {
        Scalar::new(value, &like.dtype())
    }

    pub(super) fn quick_gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let slope = scalar::<B>(&x, QUICK_GELU_SLOPE);
        let s = B::sigmoid(B::float_mul_scalar(x.clone(), slope));
        B::float_mul(x, s)
    }

    pub(super) fn quick_gelu_backward<B: Backend>(
        x: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let slope = scalar::<B>(&x, QUICK_GELU_SLOPE);
        let s = B::sigmoid(B::float_mul_scalar(x.clone(), slope));
        // σ + 1.702·x·σ'(1.702x), with σ' = σ(1 − σ) from Burn's sigmoid backward.
        let ds = B::sigmoid_backward(s.clone(), B::float_mul_scalar(x, slope));
        B::float_mul(grad, B::float_add(s, ds))
    }

    pub(super) fn softmax_last<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let last = x.shape().num_dims() - 1;
        B::softmax(x, last)
    }

    pub(super) fn softmax_last_backward<B: Backend>(
        y: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let last = y.shape().num_dims() - 1;
        let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
        B::float_mul(y, B::float_sub(grad, dot))
    }
}

/// Inputs below this many elements run on the calling thread: splitting costs more.
const PARALLEL_MIN: usize = 1 << 14;

/// A contiguous f32 copy of `tensor`'s elements that the caller may overwrite: the tensor's own
/// buffer when nothing else holds it, else a fresh one.
fn owned_f32(tensor: FlexTensor) -> FlexTensor {
    let contiguous = tensor.is_contiguous() && tensor.layout().start_offset() == 0;
    if contiguous && tensor.is_unique() {
        return tensor;
    }
    let shape = tensor.shape();
    let values: Vec<f32> = tensor.to_contiguous().storage::<f32>()[..shape.num_elements()].to_vec();
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// The elements of a tensor in row-major order, borrowed.
fn contiguous_f32(tensor: &FlexTensor) -> FlexTensor {
    if tensor.is_contiguous() && tensor.layout().start_offset() == 0 {
        tensor.clone()
    } else {
        tensor.to_contiguous()
    }
}

/// Applies `f` to every element, in parallel chunks.
fn map_f32(x: FlexTensor, f: impl Fn(f32) -> f32 + Sync + Copy) -> FlexTensor {
    let mut out = owned_f32(x);
    let n = out.shape().num_elements();
    let values = &mut out.storage_mut::<f32>()[..n];
    for_chunks(values, None, |chunk, _| kernels::map(chunk, f));
    out
}

/// `out[i] = f(a[i], b[i])`, written over `a`'s buffer where possible.
fn zip_f32(a: FlexTensor, b: FlexTensor, f: impl Fn(f32, f32) -> f32 + Sync + Copy) -> FlexTensor {
    let b = contiguous_f32(&b);
    let mut out = owned_f32(a);
    let n = out.shape().num_elements();
    let other = &b.storage::<f32>()[..n];
    let values = &mut out.storage_mut::<f32>()[..n];
    for_chunks(values, Some(other), |chunk, other| {
        kernels::zip(chunk, other.expect("second operand"), f)
    });
    out
}

/// Runs `row_fn` over every last-axis row of `x` (with the matching row of `other`), in place.
fn rows_f32(
    x: FlexTensor,
    other: Option<FlexTensor>,
    row_fn: impl Fn(&mut [f32], Option<&[f32]>) + Sync + Copy,
) -> FlexTensor {
    let shape = x.shape();
    let width = match shape.num_dims() {
        0 => 1,
        d => shape[d - 1].max(1),
    };
    let other = other.map(|o| contiguous_f32(&o));
    let mut out = owned_f32(x);
    let n = shape.num_elements();
    let other_values = other.as_ref().map(|o| &o.storage::<f32>()[..n]);
    let values = &mut out.storage_mut::<f32>()[..n];
    let rows_per_task = (PARALLEL_MIN / width).max(1);
    let task = |(rows, others): (&mut [f32], Option<&[f32]>)| {
        for (i, row) in rows.chunks_mut(width).enumerate() {
            row_fn(row, others.map(|o| &o[i * width..(i + 1) * width]));
        }
    };
    if n < PARALLEL_MIN {
        task((values, other_values));
    } else {
        let chunk = rows_per_task * width;
        match other_values {
            Some(o) => values
                .par_chunks_mut(chunk)
                .zip(o.par_chunks(chunk))
                .for_each(|(v, o)| task((v, Some(o)))),
            None => values.par_chunks_mut(chunk).for_each(|v| task((v, None))),
        }
    }
    out
}

/// Splits `values` (and `other` alike) into parallel chunks for `f`.
fn for_chunks(
    values: &mut [f32],
    other: Option<&[f32]>,
    f: impl Fn(&mut [f32], Option<&[f32]>) + Sync,
) {
    if values.len() < PARALLEL_MIN {
        return f(values, other);
    }
    match other {
        Some(o) => values
            .par_chunks_mut(PARALLEL_MIN)
            .zip(o.par_chunks(PARALLEL_MIN))
            .for_each(|(v, o)| f(v, Some(o))),
        None => values.par_chunks_mut(PARALLEL_MIN).for_each(|v| f(v, None)),
    }
}

/// The logistic function, branch-free so that loops over it vectorise.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    let e = kernels::exp_nonpositive(-z.abs());
    let r = 1.0 / (1.0 + e);
    if z >= 0.0 { r } else { e * r }
}

/// Loops written so the compiler vectorises them, compiled for AVX2 + FMA where the CPU has
/// them and for the baseline (SSE2) otherwise.
mod kernels {
    /// `e^x` for `x ≤ 0` (larger inputs are taken as 0), within 2 ulp of the true value:
    /// Cody–Waite reduction `x = n·ln 2 + r`, a degree-6 polynomial for `e^r` (Cephes' `expf`
    /// coefficients) and `2^n` built from its exponent bits. Below `ln` of the smallest normal
    /// float it returns 0, where the C library would return a subnormal.
    #[inline(always)]
    pub(super) fn exp_nonpositive(x: f32) -> f32 {
        const LOWEST: f32 = -87.33;
        let clamped = x.clamp(LOWEST, 0.0);
        // Round to the nearest integer with the 1.5·2²³ trick: no rounding instruction needed.
        const ROUND: f32 = 12_582_912.0;
        let n = (clamped * std::f32::consts::LOG2_E + ROUND) - ROUND;
        let r = clamped - n * 0.693_359_4 + n * 2.121_944_4e-4;
        let mut p = 1.987_569_1e-4_f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let e_r = p * r * r + r + 1.0;
        let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
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
        ($(#[$doc:meta])* fn $name:ident$(<$($g:ident: $bound:path),*>)?($($arg:ident: $ty:ty),*) $body:block) => {
            $(#[$doc])*
            pub(super) fn $name$(<$($g: $bound),*>)?($($arg: $ty),*) {
                #[inline(always)]
                fn body$(<$($g: $bound),*>)?($($arg: $ty),*) $body

                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx2,fma")]
                    fn wide$(<$($g: $bound),*>)?($($arg: $ty),*) {
                        body($($arg),*)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::host_values;
    use burn::tensor::Device;
    use burn::tensor::activation::{sigmoid as burn_sigmoid, softmax};

    fn relative_error(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-30))
            .fold(0.0, f32::max)
    }

    #[test]
    fn exp_matches_the_c_library_within_two_ulp() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (ours, libm) = (kernels::exp_nonpositive(x), x.exp());
            assert!(
                (ours - libm).abs() <= 2.5 * f32::EPSILON * libm,
                "{x}: {ours} vs {libm}"
            );
            x += 0.0173;
        }
        assert_eq!(kernels::exp_nonpositive(0.0), 1.0);
        assert_eq!(kernels::exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(kernels::exp_nonpositive(f32::NAN).is_nan());
    }

    fn inputs(device: &Device, shape: [usize; 3]) -> Tensor<3> {
        let n = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1013) as f32 / 60.0 - 8.0)
            .collect();
        Tensor::<1>::from_floats(values.as_slice(), device).reshape(shape)
    }

    /// The fused operations agree with Burn's compositions, forward and backward, on tensors
    /// large enough to be split over threads and on a transposed (non-contiguous) view.
    #[test]
    fn fused_operations_match_burns_compositions() {
        let device = Device::flex().autodiff();
        for shape in [[3, 5, 7], [16, 65, 65]] {
            let x = inputs(&device, shape).swap_dims(1, 2).require_grad();
            let weights = inputs(&device, [shape[0], shape[2], shape[1]]);

            let fused = softmax_last(x.clone());
            let gelu = quick_gelu(x.clone());
            let loss =
                (fused.clone() * weights.clone()).sum() + (gelu.clone() * weights.clone()).sum();
            let fused_grad = x.grad(&loss.backward()).unwrap();

            let reference = softmax(x.clone(), 2);
            let reference_gelu = x.clone() * burn_sigmoid(x.clone().mul_scalar(1.702));
            let loss = (reference.clone() * weights.clone()).sum()
                + (reference_gelu.clone() * weights).sum();
            let reference_grad = x.grad(&loss.backward()).unwrap();

            assert!(
                relative_error(
                    &host_values(fused.detach()),
                    &host_values(reference.detach())
                ) < 1e-5
            );
            assert!(
                relative_error(
                    &host_values(gelu.detach()),
                    &host_values(reference_gelu.detach())
                ) < 1e-5
            );
            let (a, b) = (host_values(fused_grad), host_values(reference_grad));
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(&b)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-5 * scale,
                "{shape:?}: gradients differ by {worst} (scale {scale})"
            );
        }
    }

    #[test]
    fn masked_softmax_rows_give_zero_weight_to_masked_positions() {
        let device = Device::flex();
        let x =
            Tensor::<1>::from_floats([0.5, f32::NEG_INFINITY, -1.0], &device).reshape([1, 1, 3]);
        let y = host_values(softmax_last(x));
        assert_eq!(y[1], 0.0);
        assert!((y[0] + y[2] - 1.0).abs() < 1e-6);
    }
}
