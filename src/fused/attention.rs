//! Multi-head attention on slices, for the CPU backend: the scores, their softmax and the
//! weighted sum of values, one sequence per parallel task.
//!
//! Why: composed from tensor operations, attention splits the projected queries, keys and
//! values into heads (a copy of each), multiplies every head's scores into a new tensor (which
//! the CPU backend zero-fills and copies again on the calling thread), adds the mask, and
//! copies the heads back together; the backward pass repeats all of it. Here each head reads
//! its columns of the `[tokens, width]` projections in place, the scores live in one small
//! buffer per task, and the weights are not kept: the backward pass recomputes them, which
//! costs one small product a head.
//!
//! ```text
//! S = s·Q_h·K_hᵀ (s = 1/√(width/heads); causal: S_ij = −∞ for j > i)   W = softmax(S) by rows
//! O_h = W·V_h
//! ∂L/∂V_h = Wᵀ·G_h   ∂L/∂W = G_h·V_hᵀ   ∂L/∂S = W ⊙ (∂L/∂W − ⟨∂L/∂W, W⟩ by rows)
//! ∂L/∂Q_h = s·∂L/∂S·K_h   ∂L/∂K_h = s·(∂L/∂S)ᵀ·Q_h
//! ```

use rayon::prelude::*;

use super::kernels;
use super::product::{Strided, product, product_into};

/// The sizes of an attention call: `batch` sequences of `queries` query and `keys` key
/// positions, `width` channels split into `heads` heads, and whether position `i` may only
/// see keys `0..=i`.
#[derive(Clone, Copy, Debug)]
pub(super) struct AttentionShape {
    pub(super) batch: usize,
    pub(super) queries: usize,
    pub(super) keys: usize,
    pub(super) width: usize,
    pub(super) heads: usize,
    pub(super) causal: bool,
}

impl AttentionShape {
    fn head_width(&self) -> usize {
        self.width / self.heads
    }

    fn scale(&self) -> f32 {
        (self.head_width() as f32).powf(-0.5)
    }

    /// One head's attention weights `[queries, keys]` into `weights`, from the sequence's
    /// queries and keys (`[positions, width]` each) and the head's first channel.
    fn weights(&self, weights: &mut [f32], q: &[f32], k: &[f32], first: usize) {
        let (width, keys) = (self.width, self.keys);
        product(
            [self.queries, keys, self.head_width()],
            weights,
            Strided::rows(&q[first..], width),
            Strided::transposed(&k[first..], width),
            false,
            false,
        );
        let scale = self.scale();
        for (i, row) in weights.chunks_mut(keys).enumerate() {
            let visible = if self.causal { (i + 1).min(keys) } else { keys };
            row.iter_mut().for_each(|s| *s *= scale);
            kernels::softmax_row(&mut row[..visible]);
            row[visible..].fill(0.0);
        }
    }
}

/// The attention output `[batch, queries, width]` (heads side by side, before the output
/// projection) of the projected queries `[batch, queries, width]`, keys and values
/// `[batch, keys, width]`.
pub(super) fn attention_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttentionShape,
) -> Vec<f32> {
    let AttentionShape {
        queries,
        keys,
        width,
        heads,
        ..
    } = shape;
    let head_width = shape.head_width();
    let mut out = vec![0.0f32; shape.batch * queries * width];
    if out.is_empty() || keys == 0 {
        return out;
    }
    out.par_chunks_mut(queries * width)
        .zip(q.par_chunks(queries * width))
        .zip(k.par_chunks(keys * width).zip(v.par_chunks(keys * width)))
        .for_each(|((out, q), (k, v))| {
            let mut weights = vec![0.0f32; queries * keys];
            for first in (0..heads).map(|h| h * head_width) {
                shape.weights(&mut weights, q, k, first);
                into_head(
                    [queries, head_width, keys],
                    &mut out[first..],
                    width,
                    Strided::rows(&weights, keys),
                    Strided::rows(&v[first..], width),
                );
            }
        });
    out
}

/// The gradients of the queries, keys and values given the output gradient `grad`
/// `[batch, queries, width]`.
pub(super) fn attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    grad: &[f32],
    shape: AttentionShape,
) -> [Vec<f32>; 3] {
    let AttentionShape {
        batch,
        queries,
        keys,
        width,
        heads,
        ..
    } = shape;
    let head_width = shape.head_width();
    let mut q_grad = vec![0.0f32; batch * queries * width];
    let mut k_grad = vec![0.0f32; batch * keys * width];
    let mut v_grad = vec![0.0f32; batch * keys * width];
    if q_grad.is_empty() || keys == 0 {
        return [q_grad, k_grad, v_grad];
    }
    let scale = shape.scale();
    let sequences = q
        .par_chunks(queries * width)
        .zip(grad.par_chunks(queries * width));
    let grads = q_grad.par_chunks_mut(queries * width).zip(
        k_grad
            .par_chunks_mut(keys * width)
            .zip(v_grad.par_chunks_mut(keys * width)),
    );
    let inputs = k.par_chunks(keys * width).zip(v.par_chunks(keys * width));
    grads.zip(sequences.zip(inputs)).for_each(
        |((q_grad, (k_grad, v_grad)), ((q, grad), (k, v)))| {
            let mut weights = vec![0.0f32; queries * keys];
            let mut scores_grad = vec![0.0f32; queries * keys];
            for first in (0..heads).map(|h| h * head_width) {
                shape.weights(&mut weights, q, k, first);
                let grad_h = Strided::rows(&grad[first..], width);
                into_head(
                    [keys, head_width, queries],
                    &mut v_grad[first..],
                    width,
                    Strided::transposed(&weights, keys),
                    grad_h,
                );
                product(
                    [queries, keys, head_width],
                    &mut scores_grad,
                    grad_h,
                    Strided::transposed(&v[first..], width),
                    false,
                    false,
                );
                for (g, w) in scores_grad.chunks_mut(keys).zip(weights.chunks(keys)) {
                    kernels::softmax_backward_row(g, w);
                    g.iter_mut().for_each(|g| *g *= scale);
                }
                into_head(
                    [queries, head_width, keys],
                    &mut q_grad[first..],
                    width,
                    Strided::rows(&scores_grad, keys),
                    Strided::rows(&k[first..], width),
                );
                into_head(
                    [keys, head_width, queries],
                    &mut k_grad[first..],
                    width,
                    Strided::transposed(&scores_grad, keys),
                    Strided::rows(&q[first..], width),
                );
            }
        },
    );
    [q_grad, k_grad, v_grad]
}

/// `dst = lhs · rhs` into one head's columns of a `[positions, width]` matrix (`dst` starts at
/// the head's first column), on the calling thread: the sequences are the parallel tasks.
fn into_head(dims: [usize; 3], dst: &mut [f32], width: usize, lhs: Strided, rhs: Strided) {
    product_into(dims, dst, width, lhs, rhs, false, false);
}
