//! The fused operations as Burn computes them (composed from its tensor operations, or its own
//! batch-norm, pooling and convolution operations), for backends without a kernel (wgpu) and for
//! dtypes or options the CPU kernels skip.

use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Scalar, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, TensorData};

use super::{AttentionSetting, QUICK_GELU_SLOPE, causal_mask};

/// `value` in `like`'s dtype.
fn scalar<B: Backend>(like: &FloatTensor<B>, value: f32) -> Scalar {
    Scalar::new(value, &like.dtype())
}

/// `x·σ(1.702x)`.
pub(super) fn quick_gelu<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let slope = scalar::<B>(&x, QUICK_GELU_SLOPE);
    let s = B::sigmoid(B::float_mul_scalar(x.clone(), slope));
    B::float_mul(x, s)
}

/// `g·(σ + 1.702·x·σ(1 − σ))`, `σ = σ(1.702x)`.
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

/// Burn's softmax over the last axis.
pub(super) fn softmax_last<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let last = x.shape().num_dims() - 1;
    B::softmax(x, last)
}

/// `y ⊙ (g − ⟨g, y⟩)` row by row.
pub(super) fn softmax_last_backward<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
    B::float_mul(y, B::float_sub(grad, dot))
}

/// Both gradients of a bias-free convolution with Burn's own backward operations.
pub(super) fn conv2d_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x_grad = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
    (x_grad, B::conv2d_weight_backward(x, weight, grad, options))
}

/// Average pooling over `size × size` blocks with Burn's own operation.
pub(super) fn avg_pool_blocks<B: Backend>(x: FloatTensor<B>, size: usize) -> FloatTensor<B> {
    let [k, pad] = [[size; 2], [0; 2]];
    B::avg_pool2d(x, k, k, pad, true, false)
}

/// The input gradient of [`avg_pool_blocks`] with Burn's own backward operation.
pub(super) fn avg_pool_blocks_backward<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    size: usize,
) -> FloatTensor<B> {
    let [k, pad] = [[size; 2], [0; 2]];
    B::avg_pool2d_backward(x, grad, k, k, pad, true, false)
}

/// Training-mode batch norm with Burn's own operation: output, batch mean, biased variance.
pub(super) fn batch_norm_batch_stats<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let result = <B as ModuleOps<B>>::batch_norm_train(x, gamma, beta, eps);
    (result.output, result.mean, result.variance)
}

/// The gradients of [`batch_norm_batch_stats`]'s input, scale and shift with Burn's own
/// backward operation.
pub(super) fn batch_norm_batch_stats_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    var: FloatTensor<B>,
    grad: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let grads = <B as ModuleOps<B>>::batch_norm_train_backward(x, gamma, mean, var, eps, grad);
    (grads.x_grad, grads.gamma_grad, grads.beta_grad)
}

/// A bias-free convolution with Burn's own operation.
pub(super) fn conv2d<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    options: ConvOptions<2>,
) -> FloatTensor<B> {
    B::conv2d(x, weight, None, options)
}

/// `x·weight + bias` with Burn's product and broadcast sum.
pub(super) fn linear<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    let width = bias.shape()[0];
    let bias = B::float_reshape(bias, Shape::new([1, width]));
    B::float_add(B::float_matmul(x, weight), bias)
}

/// `g·Wᵀ`, `xᵀ·g` and the column sums of `g` (all three: on a GPU they cost little).
pub(super) fn linear_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let x_grad = B::float_matmul(grad.clone(), B::float_transpose(weight));
    let weight_grad = B::float_matmul(B::float_transpose(x), grad.clone());
    (x_grad, weight_grad, column_sums::<B>(grad))
}

/// The sum of the rows of a `[rows, width]` tensor, `[width]`.
fn column_sums<B: Backend>(values: FloatTensor<B>) -> FloatTensor<B> {
    let width = values.shape()[1];
    B::float_reshape(B::float_sum_dim(values, 0), Shape::new([width]))
}

/// The layer norm's gradients (see [`super::dense`] for the formulas) from Burn's tensor
/// operations, on `x` flattened to `[rows, width]`.
pub(super) fn layer_norm_last_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let width = gamma.shape()[0];
    let rows = shape.num_elements() / width.max(1);
    let flat = Shape::new([rows, width]);
    let (x, grad) = (
        B::float_reshape(x, flat.clone()),
        B::float_reshape(grad, flat),
    );
    let centred = B::float_sub(x.clone(), B::float_mean_dim(x, 1));
    let variance = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 1);
    let inverse_std = B::float_recip(B::float_sqrt(B::float_add_scalar(
        variance,
        Scalar::new(eps, &grad.dtype()),
    )));
    let normalised = B::float_mul(centred, inverse_std.clone());
    let x_grad = {
        let gamma = B::float_reshape(gamma, Shape::new([1, width]));
        let scaled = B::float_mul(grad.clone(), gamma);
        let mean_scaled = B::float_mean_dim(scaled.clone(), 1);
        let mean_weighted = B::float_mean_dim(B::float_mul(scaled.clone(), normalised.clone()), 1);
        let inner = B::float_sub(
            B::float_sub(scaled, mean_scaled),
            B::float_mul(normalised.clone(), mean_weighted),
        );
        B::float_reshape(B::float_mul(inverse_std, inner), shape)
    };
    let gamma_grad = column_sums::<B>(B::float_mul(grad.clone(), normalised));
    (x_grad, gamma_grad, column_sums::<B>(grad))
}

/// A `[batch, positions, width]` tensor as `[batch, heads, positions, width / heads]`.
fn split_heads<B: Backend>(x: FloatTensor<B>, heads: usize) -> FloatTensor<B> {
    let [batch, positions, width] = x.shape().dims();
    let split = B::float_reshape(x, Shape::new([batch, positions, heads, width / heads]));
    B::float_swap_dims(split, 1, 2)
}

/// The inverse of [`split_heads`].
fn merge_heads<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let [batch, heads, positions, head_width] = x.shape().dims();
    let merged = B::float_swap_dims(x, 1, 2);
    B::float_reshape(merged, Shape::new([batch, positions, heads * head_width]))
}

/// Every head's attention weights `[batch, heads, queries, keys]` from the split queries and
/// keys, with Burn's product, mask and softmax.
fn attention_weights<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    setting: AttentionSetting,
) -> FloatTensor<B> {
    let [_, _, queries, head_width] = q.shape().dims();
    let keys = k.shape()[2];
    let scale = scalar::<B>(&q, (head_width as f32).powf(-0.5));
    let device = q.device();
    let mut scores = B::float_mul_scalar(B::float_matmul(q, B::float_swap_dims(k, 2, 3)), scale);
    if setting.causal {
        // An additive mask: GPU backends cannot upload boolean tensors.
        let mask = TensorData::new(causal_mask(queries, keys), [1, 1, queries, keys])
            .convert_dtype(scores.dtype());
        scores = B::float_add(scores, B::float_from_data(mask, &device));
    }
    softmax_last::<B>(scores)
}

/// Multi-head attention of the projected queries `[batch, queries, width]` to the keys and
/// values `[batch, keys, width]`, heads side by side in the output, with Burn's operations.
pub(super) fn attention<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    setting: AttentionSetting,
) -> FloatTensor<B> {
    let heads = setting.heads;
    let weights = attention_weights::<B>(
        split_heads::<B>(q, heads),
        split_heads::<B>(k, heads),
        setting,
    );
    merge_heads::<B>(B::float_matmul(weights, split_heads::<B>(v, heads)))
}

/// The gradients of [`attention`]'s queries, keys and values (see [`mod@super::attention`] for the
/// formulas), the weights recomputed.
pub(super) fn attention_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    grad: FloatTensor<B>,
    setting: AttentionSetting,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let heads = setting.heads;
    let [q, k, v, grad] = [q, k, v, grad].map(|x| split_heads::<B>(x, heads));
    let head_width = q.shape()[3];
    let weights = attention_weights::<B>(q.clone(), k.clone(), setting);
    let v_grad = B::float_matmul(B::float_swap_dims(weights.clone(), 2, 3), grad.clone());
    let weights_grad = B::float_matmul(grad, B::float_swap_dims(v, 2, 3));
    let scale = scalar::<B>(&weights_grad, (head_width as f32).powf(-0.5));
    let scores_grad = B::float_mul_scalar(softmax_last_backward::<B>(weights, weights_grad), scale);
    let q_grad = B::float_matmul(scores_grad.clone(), k);
    let k_grad = B::float_matmul(B::float_swap_dims(scores_grad, 2, 3), q);
    (
        merge_heads::<B>(q_grad),
        merge_heads::<B>(k_grad),
        merge_heads::<B>(v_grad),
    )
}
