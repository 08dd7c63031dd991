//! The linear layer and the layer norm's backward pass on slices, for the CPU backend.
//!
//! Why: on the CPU backend every new matrix product's output is zero-filled and then copied
//! once more into an aligned buffer, on the calling thread, and a training step's bias
//! additions, their gradients and the layer norm's backward pass (a dozen tensor operations
//! under autodiff) also run on one thread. On a demo-ViT attribute step the two cores were busy
//! only about two thirds of the time. Here the output of `x·W + b` starts as the bias rows,
//! written in parallel, and the product adds onto it; the gradients are products and
//! fixed-order parallel sums.
//!
//! ```text
//! y = x·W + b          ∂L/∂x = g·Wᵀ   ∂L/∂W = xᵀ·g   ∂L/∂b = Σ_rows g
//! y = x̂·γ + β, x̂ = (x − μ)·r, r = 1/√(σ² + ε)   (μ, σ² per row)
//!     ∂L/∂β = Σ_rows g   ∂L/∂γ = Σ_rows g·x̂   ∂L/∂x = r·(h − mean(h) − x̂·mean(h·x̂)), h = g·γ
//! ```

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::kernels;
use super::product::{Strided, product};

/// Rows a parallel task takes at least, so that small tensors do not pay for splitting.
const MIN_ELEMENTS_PER_TASK: usize = 1 << 14;

/// How many partial sums a column sum over rows adds up, in order: fixed, so that the result
/// does not depend on the number of threads.
const COLUMN_SUM_PARTIALS: usize = 16;

/// The sizes of a linear layer: `rows` inputs of width `d_in`, outputs of width `d_out`.
#[derive(Clone, Copy, Debug)]
pub(super) struct LinearShape {
    pub(super) rows: usize,
    pub(super) d_in: usize,
    pub(super) d_out: usize,
}

/// `x·W + b` for `x` `[rows, d_in]`, `W` `[d_in, d_out]`, `b` `[d_out]`, all row-major.
pub(super) fn linear_forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    shape: LinearShape,
) -> Vec<f32> {
    let LinearShape { rows, d_in, d_out } = shape;
    let mut out = repeated_rows(bias, rows);
    product(
        [rows, d_out, d_in],
        &mut out,
        Strided::rows(x, d_in),
        Strided::rows(weight, d_out),
        true,
        true,
    );
    out
}

/// The gradients of `x`, `W` and `b` given the output gradient `grad` `[rows, d_out]`; only
/// those `wanted` says (x, W, b) are computed.
pub(super) fn linear_backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    shape: LinearShape,
    wanted: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let LinearShape { rows, d_in, d_out } = shape;
    let grads = Strided::rows(grad, d_out);
    let x_grad = wanted[0].then(|| {
        let mut x_grad = repeated_rows(&vec![0.0; d_in], rows);
        // Wᵀ: element (o, i) is W[i, o].
        let weight_t = Strided::transposed(weight, d_out);
        product(
            [rows, d_in, d_out],
            &mut x_grad,
            grads,
            weight_t,
            false,
            true,
        );
        x_grad
    });
    let weight_grad = wanted[1].then(|| {
        let mut weight_grad = vec![0.0; d_in * d_out];
        let x_t = Strided::transposed(x, d_in);
        product(
            [d_in, d_out, rows],
            &mut weight_grad,
            x_t,
            grads,
            false,
            true,
        );
        weight_grad
    });
    let bias_grad = wanted[2].then(|| column_sums(grad, d_out));
    [x_grad, weight_grad, bias_grad]
}

/// The gradients of the layer norm's input, scale and shift given its input `x`
/// `[rows, width]`, scale `gamma` and the output gradient `grad`.
pub(super) fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    grad: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    let rows = x.len() / width.max(1);
    let mut x_grad = repeated_rows(&vec![0.0; width], rows);
    let per_task = rows_per_task(rows, width);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = x_grad
        .par_chunks_mut(per_task * width)
        .zip(x.par_chunks(per_task * width))
        .zip(grad.par_chunks(per_task * width))
        .map(|((x_grad, x), grad)| {
            let mut sums = (vec![0.0f32; width], vec![0.0f32; width]);
            let mut normalised = vec![0.0f32; width];
            let mut scaled = vec![0.0f32; width];
            let rows = x_grad
                .chunks_mut(width)
                .zip(x.chunks(width))
                .zip(grad.chunks(width));
            for ((x_grad, x), g) in rows {
                let mean = kernels::sum(x) / width as f32;
                let variance = kernels::squared_deviation_sum(x, mean) / width as f32;
                let inverse_std = 1.0 / (variance + eps).sqrt();
                for ((n, s), ((x, g), gamma)) in normalised
                    .iter_mut()
                    .zip(&mut scaled)
                    .zip(x.iter().zip(g).zip(gamma))
                {
                    *n = (x - mean) * inverse_std;
                    *s = g * gamma;
                }
                add(&mut sums.1, g);
                for ((sum, g), n) in sums.0.iter_mut().zip(g).zip(&normalised) {
                    *sum += g * n;
                }
                let mean_scaled = kernels::sum(&scaled) / width as f32;
                let mean_weighted = kernels::dot(&scaled, &normalised) / width as f32;
                for ((out, s), n) in x_grad.iter_mut().zip(&scaled).zip(&normalised) {
                    *out = inverse_std * (s - mean_scaled - n * mean_weighted);
                }
            }
            sums
        })
        .collect();
    let (mut gamma_grad, mut beta_grad) = (vec![0.0; width], vec![0.0; width]);
    for (gamma_part, beta_part) in partials {
        add(&mut gamma_grad, &gamma_part);
        add(&mut beta_grad, &beta_part);
    }
    (x_grad, gamma_grad, beta_grad)
}

/// Rows per parallel task of a row-wise pass: at most [`COLUMN_SUM_PARTIALS`] tasks, none
/// smaller than [`MIN_ELEMENTS_PER_TASK`] elements; a function of the shape alone.
fn rows_per_task(rows: usize, width: usize) -> usize {
    let smallest = MIN_ELEMENTS_PER_TASK.div_ceil(width.max(1));
    rows.div_ceil(COLUMN_SUM_PARTIALS).max(smallest).max(1)
}

/// The sum of the rows of `values` `[rows, width]`: partial sums over fixed runs of rows,
/// added in order.
fn column_sums(values: &[f32], width: usize) -> Vec<f32> {
    if width == 0 {
        return Vec::new();
    }
    let per_task = rows_per_task(values.len() / width, width);
    let partials: Vec<Vec<f32>> = values
        .par_chunks(per_task * width)
        .map(|chunk| {
            let mut sums = vec![0.0f32; width];
            for row in chunk.chunks(width) {
                add(&mut sums, row);
            }
            sums
        })
        .collect();
    let mut total = vec![0.0f32; width];
    for part in partials {
        add(&mut total, &part);
    }
    total
}

/// `sums += values`, element by element.
pub(super) fn add(sums: &mut [f32], values: &[f32]) {
    for (sum, v) in sums.iter_mut().zip(values) {
        *sum += v;
    }
}

/// `rows` copies of `row`, written in parallel straight into a new buffer (no zero-fill
/// first).
fn repeated_rows(row: &[f32], rows: usize) -> Vec<f32> {
    let width = row.len();
    if width == 0 || rows == 0 {
        return Vec::new();
    }
    let mut out: Vec<MaybeUninit<f32>> = Vec::with_capacity(rows * width);
    // SAFETY: `MaybeUninit` needs no initialisation; every element is written below.
    unsafe { out.set_len(rows * width) };
    let per_task = MIN_ELEMENTS_PER_TASK.div_ceil(width) * width;
    out.par_chunks_mut(per_task).for_each(|chunk| {
        for slots in chunk.chunks_mut(width) {
            for (slot, value) in slots.iter_mut().zip(row) {
                slot.write(*value);
            }
        }
    });
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: every element was written above, and `MaybeUninit<f32>` has `f32`'s layout, so
    // the buffer is a valid `Vec<f32>` of the same length and capacity.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast::<f32>(), out.len(), out.capacity()) }
}
