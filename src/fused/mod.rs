//! Fused operations: QuickGELU, the softmax over the last dimension, training-mode batch
//! normalisation, block average pooling, the bias-free convolution, the linear layer, the
//! layer norm and multi-head attention, each one node of the autodiff graph with a
//! hand-written backward pass.
//!
//! Why they exist: of a CLIP model's elementwise work, the first three touch the biggest
//! tensors of a training step (the MLP's hidden activations, every head's attention scores,
//! every ResNet feature map). Burn builds QuickGELU from a scale, a sigmoid and a product and
//! softmax from a maximum, a difference, an exponential, a sum and a quotient, and records each
//! for the backward pass, which then reads and writes the same tensors a dozen times; on the CPU
//! backend (burn-flex) the exponentials are single-threaded loops over the C library's scalar
//! `expf`. Burn's training-mode batch norm is one autodiff node, but the CPU backend computes
//! it, both ways, from a dozen operations with every feature map transposed to channels-first
//! and back. Here each is one pass forward and one or two backward, split over rayon's threads,
//! with an exponential the compiler vectorises: QuickGELU and softmax took a quarter off a
//! demo-ViT training step, batch norm a fifth off a demo-ResNet attribute step. The CPU
//! backend's convolution backward passes and average-pool backward pass cost a ResNet tower on
//! small pictures most of its step; [`conv`] computes all three convolution passes as matrix
//! products over groups of images, which took a further third off that step. On the CPU
//! backend every matrix product's output is zero-filled and copied into an aligned buffer on the
//! calling thread, and under autodiff Burn records a layer norm as a dozen single-threaded
//! operations; [`dense`] writes a linear layer's output as its bias rows in parallel and adds
//! the product onto them, and computes the layer norm's gradients in one parallel pass (the
//! forward pass stays Burn's, already one parallel kernel). [`mod@attention`] computes each
//! sequence's heads from the projections in place, where the composition copies every head
//! out and back and allocates every score matrix twice over (Burn's own attention operation
//! has a CPU kernel for the forward pass only: under autodiff it falls back to the
//! composition, and it takes the heads already split out).
//!
//! The operations are a Burn backend extension: the CPU backend gets the kernels of [`cpu`],
//! [`conv`], [`dense`] and [`mod@attention`], any other backend (wgpu) what Burn itself would run (the
//! compositions of [`composed`], Burn's own batch-norm, pooling, convolution and layer-norm
//! operations), and autodiff wraps
//! either with
//!
//! ```text
//! quick_gelu(x) = x·σ(1.702x)    quick_gelu'(x) = σ(1.702x) + 1.702·x·σ(1.702x)·(1 − σ(1.702x))
//! y = softmax(x), last axis      ∂L/∂x = y ⊙ (g − ⟨g, y⟩)   (g = ∂L/∂y; one dot product a row)
//! y = γ·x̂ + β, x̂ = (x − μ)/√(σ² + ε)   (μ, σ² per channel over batch and pixels, N values each)
//!     ∂L/∂β = Σg   ∂L/∂γ = Σg·x̂   ∂L/∂x = γ/√(σ² + ε) · (g − Σg/N − x̂·Σg·x̂/N)
//! y = mean of each k×k block     ∂L/∂x = g of the pixel's block / k²
//! y = W ⋆ x                      ∂L/∂W = g ⋆ x (correlation),  ∂L/∂x = Wᵀ ⋆ g (transposed)
//! y = x·W + b and the layer norm: see [`dense`]; attention: see [`mod@attention`]
//! ```

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Cube, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn::tensor::ops::ConvOptions;

mod attention;
mod composed;
mod conv;
mod cpu;
mod dense;
mod kernels;
mod product;

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

/// Batch normalisation of `x` `[n, c, h, w]` with the batch's own statistics, scaled by `gamma`
/// and shifted by `beta` (`[c]`). Also returns each channel's mean and biased variance `[c]`,
/// outside the graph, for the running statistics.
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (y, mean, var) = <Dispatch as FusedOps>::batch_norm_batch_stats(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(var),
    )
}

/// The mean of every `size × size` block of `x` `[n, c, h, w]` (average pooling with stride
/// `size`, no padding; rows and columns past the last whole block are dropped).
pub fn avg_pool_blocks(x: Tensor<4>, size: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::avg_pool_blocks(
        x.into_dispatch(),
        size,
    ))
}

/// A 2-D convolution of `x` `[n, c_in, h, w]` by `weight` `[c_out, c_in, kh, kw]` without bias.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::conv2d_plain(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    ))
}

/// `x·weight + bias` for `x` `[rows, in]`, `weight` `[in, out]`, `bias` `[out]`.
pub fn linear(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// Layer normalisation over the last axis of `x`, scaled by `gamma` and shifted by `beta`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::layer_norm_last(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps,
    ))
}

/// The fused operations and their backward passes. The default bodies are Burn's own
/// compositions, used by every backend without a kernel of its own.
/// How [`attention`] splits and masks its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionSetting {
    /// Heads the width is split into.
    pub heads: usize,
    /// Whether each query position sees only the key positions up to its own (a text
    /// transformer's causal mask).
    pub causal: bool,
}

/// Multi-head attention of the projected queries `[batch, queries, width]` to the projected
/// keys and values `[batch, keys, width]`, scores scaled by `1/√(width/heads)`: every head's
/// softmax-weighted sum of values, heads side by side. The attention weights are not kept (the
/// backward pass recomputes them), so callers that read them compose attention themselves.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, setting: AttentionSetting) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        setting,
    ))
}

/// The additive causal mask `[queries, keys]`, row-major: 0 where the key position is at most
/// the query position, −∞ after it.
pub fn causal_mask(queries: usize, keys: usize) -> Vec<f32> {
    (0..queries)
        .flat_map(|i| (0..keys).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect()
}

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

    /// Batch normalisation with the batch's statistics: the output `[n, c, h, w]`, and the
    /// channels' means and biased variances `[c]`. Burn's own operation by default (one autodiff
    /// node there too, but computed by the CPU backend from a dozen tensor operations with two
    /// channel-first layout copies each way).
    fn batch_norm_batch_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::batch_norm_batch_stats::<Self>(x, gamma, beta, eps)
    }

    /// The gradients of [`FusedOps::batch_norm_batch_stats`]'s input, scale and shift given its
    /// input, scale, the batch statistics it returned and the output gradient.
    fn batch_norm_batch_stats_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::batch_norm_batch_stats_backward::<Self>(x, gamma, mean, var, grad, eps)
    }

    /// The mean of every `size × size` block. Burn's own average pooling by default.
    fn avg_pool_blocks(x: FloatTensor<Self>, size: usize) -> FloatTensor<Self> {
        composed::avg_pool_blocks::<Self>(x, size)
    }

    /// The input gradient of [`FusedOps::avg_pool_blocks`] given its input and output gradient.
    fn avg_pool_blocks_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        size: usize,
    ) -> FloatTensor<Self> {
        composed::avg_pool_blocks_backward::<Self>(x, grad, size)
    }

    /// `x·weight + bias` over rows. Burn's product and sum by default.
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        composed::linear::<Self>(x, weight, bias)
    }

    /// The gradients of [`FusedOps::linear`]'s input, weight and bias given the first two and
    /// the output gradient. Those `wanted` marks false may come back empty, uncomputed.
    fn linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        _wanted: [bool; 3],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::linear_backward::<Self>(x, weight, grad)
    }

    /// Layer normalisation over the last axis: Burn's own operation, which the CPU backend
    /// computes in one parallel pass.
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        <Self as burn::backend::ops::ModuleOps<Self>>::layer_norm(x, gamma, Some(beta), eps)
    }

    /// The gradients of [`FusedOps::layer_norm_last`]'s input, scale and shift given the first
    /// two and the output gradient. Those `wanted` marks false may come back empty, uncomputed.
    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
        _wanted: [bool; 3],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::layer_norm_last_backward::<Self>(x, gamma, grad, eps)
    }

    /// Multi-head attention of the projected queries `[batch, queries, width]` to the projected
    /// keys and values `[batch, keys, width]`: every head's softmax-weighted sum of values, heads
    /// side by side (before the output projection).
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        setting: AttentionSetting,
    ) -> FloatTensor<Self> {
        composed::attention::<Self>(q, k, v, setting)
    }

    /// The gradients of [`FusedOps::attention`]'s queries, keys and values given them and the
    /// output gradient.
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        setting: AttentionSetting,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed::attention_backward::<Self>(q, k, v, grad, setting)
    }

    /// A 2-D convolution without bias. Burn's own operation by default.
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        composed::conv2d::<Self>(x, weight, options)
    }

    /// The gradients of [`FusedOps::conv2d_plain`]'s input and weight given both and the output
    /// gradient.
    fn conv2d_plain_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed::conv2d_backward::<Self>(x, weight, grad, options)
    }
}

impl FusedOps for Cube {}

impl<B: FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // The backward pass recomputes the sigmoid from the input.
        unary_node::<B, C, ()>(
            x,
            (),
            |x, ()| B::quick_gelu(x),
            |x, grad, ()| B::quick_gelu_backward(x, grad),
            Keep::Input,
        )
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // The backward pass needs only the output, so the scores' buffer can take it.
        unary_node::<B, C, ()>(
            x,
            (),
            |x, ()| B::softmax_last(x),
            |y, grad, ()| B::softmax_last_backward(y, grad),
            Keep::Output,
        )
    }

    fn avg_pool_blocks(x: FloatTensor<Self>, size: usize) -> FloatTensor<Self> {
        // Burn's backward pass reads the input; the CPU kernel only its shape.
        unary_node::<B, C, usize>(
            x,
            size,
            B::avg_pool_blocks,
            B::avg_pool_blocks_backward,
            Keep::Input,
        )
    }

    fn batch_norm_batch_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        /// Keeps the input, the scale and the batch statistics.
        #[derive(Debug)]
        struct BatchNormBackward;

        type BatchNormState<B> = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            f64,
        );

        impl<B: FusedOps> Backward<B, 3> for BatchNormBackward {
            type State = BatchNormState<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, gamma, mean, var, eps) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let (dx, dgamma, dbeta) =
                    B::batch_norm_batch_stats_backward(x, gamma, mean, var, grad, eps);
                let [x_node, gamma_node, beta_node] = ops.parents;
                for (node, grad) in [(x_node, dx), (gamma_node, dgamma), (beta_node, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let prep = BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (input, scale) = (x.into_primitive(), gamma.into_primitive());
        let (y, mean, var) =
            B::batch_norm_batch_stats(input.clone(), scale.clone(), beta.into_primitive(), eps);
        let output = match prep {
            OpsKind::Tracked(prep) => {
                let state = (input, scale, mean.clone(), var.clone(), eps);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        let constant = |t: FloatTensor<B>| FloatTensor::<Self>::new(t);
        (output, constant(mean), constant(var))
    }

    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        ternary_node::<B, C, ()>(
            [x, weight, bias],
            (),
            |x, weight, bias, ()| <B as FusedOps>::linear(x, weight, bias),
            |x, weight, _bias, grad, (), wanted| B::linear_backward(x, weight, grad, wanted),
        )
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        ternary_node::<B, C, f64>(
            [x, gamma, beta],
            eps,
            B::layer_norm_last,
            |x, gamma, _beta, grad, eps, wanted| {
                B::layer_norm_last_backward(x, gamma, grad, eps, wanted)
            },
        )
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        setting: AttentionSetting,
    ) -> FloatTensor<Self> {
        ternary_node::<B, C, AttentionSetting>(
            [q, k, v],
            setting,
            <B as FusedOps>::attention,
            |q, k, v, grad, setting, _| B::attention_backward(q, k, v, grad, setting),
        )
    }

    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        /// Keeps the input, the weight and the options.
        #[derive(Debug)]
        struct ConvBackward;

        impl<B: FusedOps> Backward<B, 2> for ConvBackward {
            type State = (FloatTensor<B>, FloatTensor<B>, ConvOptions<2>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, weight, options) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let (dx, dweight) = B::conv2d_plain_backward(x, weight, grad, options);
                let [x_node, weight_node] = ops.parents;
                for (node, grad) in [(x_node, dx), (weight_node, dweight)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let prep = ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        let (input, kernel) = (x.into_primitive(), weight.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::conv2d_plain(input.clone(), kernel.clone(), options.clone());
                prep.finish((input, kernel, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_plain(input, kernel, options)),
        }
    }
}

/// The backward pass of a three-input fused operation that keeps its inputs:
/// `backward(a, b, c, output gradient, setting, which gradients are wanted)` gives the three
/// inputs' gradients (those not wanted may be empty).
#[derive(Debug)]
struct TernaryBackward<B: Backend, P> {
    backward: TernaryGradients<B, P>,
}

/// A three-input fused operation's forward pass: `forward(a, b, c, setting)`.
type TernaryForward<B, P> = fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, P) -> FloatTensor<B>;

/// See [`TernaryBackward`].
type TernaryGradients<B, P> = fn(
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    P,
    [bool; 3],
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

impl<B: Backend, P: Clone + Send + std::fmt::Debug + 'static> Backward<B, 3>
    for TernaryBackward<B, P>
{
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, P);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (a, b, c, setting) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let (a, b, c) = (self.backward)(a, b, c, grad, setting, wanted);
        for (node, grad) in ops.parents.into_iter().zip([a, b, c]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// Records `forward(a, b, c, setting)` as one autodiff node that keeps its inputs for its
/// backward pass (a bias or a shift the backward pass does not read costs nothing to keep).
fn ternary_node<B: Backend, C: CheckpointStrategy, P: Clone + Send + std::fmt::Debug + 'static>(
    [a, b, c]: [FloatTensor<Autodiff<B, C>>; 3],
    setting: P,
    forward: TernaryForward<B, P>,
    backward: TernaryGradients<B, P>,
) -> FloatTensor<Autodiff<B, C>> {
    let prep = TernaryBackward { backward }
        .prepare::<C>([a.node(), b.node(), c.node()])
        .compute_bound()
        .stateful();
    let (a, b, c) = (a.into_primitive(), b.into_primitive(), c.into_primitive());
    match prep {
        OpsKind::Tracked(prep) => {
            let y = forward(a.clone(), b.clone(), c.clone(), setting.clone());
            prep.finish((a, b, c, setting), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(a, b, c, setting)),
    }
}

/// Which tensor a one-input operation's backward pass reads.
#[derive(Clone, Copy, Debug)]
enum Keep {
    Input,
    Output,
}

/// The backward pass of a one-input fused operation: `backward(kept, output gradient, setting)`.
#[derive(Debug)]
struct UnaryBackward<B: Backend, P> {
    backward: fn(FloatTensor<B>, FloatTensor<B>, P) -> FloatTensor<B>,
}

impl<B: Backend, P: Clone + Send + std::fmt::Debug + 'static> Backward<B, 1>
    for UnaryBackward<B, P>
{
    type State = (FloatTensor<B>, P);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (kept, setting) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            (self.backward)(kept, grad, setting)
        });
    }
}

/// Records `forward(x, setting)` as one autodiff node whose backward pass is
/// `backward(kept, grad, setting)`, keeping the input or the output as `keep` says. A kept
/// output shares the input's buffer when nothing else holds it.
fn unary_node<B: Backend, C: CheckpointStrategy, P: Clone + Send + std::fmt::Debug + 'static>(
    x: FloatTensor<Autodiff<B, C>>,
    setting: P,
    forward: fn(FloatTensor<B>, P) -> FloatTensor<B>,
    backward: fn(FloatTensor<B>, FloatTensor<B>, P) -> FloatTensor<B>,
    keep: Keep,
) -> FloatTensor<Autodiff<B, C>> {
    let prep = UnaryBackward { backward }
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful();
    match prep {
        OpsKind::Tracked(prep) => match keep {
            Keep::Input => {
                let input = x.primitive().clone();
                let y = forward(input.clone(), setting.clone());
                prep.finish((input, setting), y)
            }
            Keep::Output => {
                let output = forward(x.into_primitive(), setting.clone());
                prep.finish((output.clone(), setting), output)
            }
        },
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive(), setting)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::host_values;
    use burn::backend::ops::ModuleOps;
    use burn::tensor::Device;
    use burn::tensor::activation::{sigmoid as burn_sigmoid, softmax};

    /// Asserts that `a` is within `tolerance` of `b`, relative to `b`'s largest magnitude (at
    /// least 10⁻³).
    fn assert_close(a: Vec<f32>, b: Vec<f32>, tolerance: f32, what: &str) {
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= tolerance * scale,
            "{what}: off by {worst} (scale {scale})"
        );
    }

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
            let what = format!("{shape:?} gradients");
            assert_close(
                host_values(fused_grad),
                host_values(reference_grad),
                1e-5,
                &what,
            );
        }
    }

    /// Training-mode batch norm against the textbook formula written with Burn's tensor
    /// operations: output, statistics and all three gradients, on a batch large enough to split
    /// over threads and on a 2×2 map with one channel per block.
    #[test]
    fn batch_norm_matches_the_formula() {
        let device = Device::flex().autodiff();
        for shape in [[2, 3, 5, 7], [64, 4, 16, 16], [8, 5, 2, 2]] {
            let [n, c, h, w] = shape;
            let x = inputs(&device, [n, c, h * w]).reshape(shape).require_grad();
            let gamma = inputs(&device, [1, 1, c]).reshape([c]).require_grad();
            let beta = inputs(&device, [1, 1, c])
                .reshape([c])
                .mul_scalar(-0.5)
                .require_grad();
            let weights = inputs(&device, [n, c, h * w]).reshape(shape).cos();

            let (y, mean, var) = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
            let fused = (y.clone() * weights.clone()).sum().backward();

            let per_channel = x.clone().swap_dims(0, 1).reshape([c, n * h * w]);
            let reference_mean = per_channel.clone().mean_dim(1);
            let centred = per_channel - reference_mean.clone();
            let reference_var = centred.clone().square().mean_dim(1);
            let reference = (centred / (reference_var.clone() + 1e-5).sqrt()
                * gamma.clone().unsqueeze_dim::<2>(1)
                + beta.clone().unsqueeze_dim::<2>(1))
            .reshape([c, n, h, w])
            .swap_dims(0, 1);
            let formula = (reference.clone() * weights).sum().backward();

            let close = |a, b, what| assert_close(a, b, 2e-5, &format!("{shape:?} {what}"));
            close(host_values(y), host_values(reference), "output");
            close(
                host_values(mean),
                host_values(reference_mean.detach()),
                "mean",
            );
            close(
                host_values(var),
                host_values(reference_var.detach()),
                "variance",
            );
            close(
                host_values(x.grad(&fused).unwrap()),
                host_values(x.grad(&formula).unwrap()),
                "input gradient",
            );
            close(
                host_values(gamma.grad(&fused).unwrap()),
                host_values(gamma.grad(&formula).unwrap()),
                "scale gradient",
            );
            close(
                host_values(beta.grad(&fused).unwrap()),
                host_values(beta.grad(&formula).unwrap()),
                "shift gradient",
            );
        }
    }

    /// The fused linear layer and layer norm agree with Burn's, output and every gradient, on
    /// shapes small enough for one thread and large enough for many partial sums, with a frozen
    /// weight too; and the compositions other backends run agree with the CPU kernels.
    #[test]
    fn linear_and_layer_norm_match_burns() {
        use burn::nn::LayerNormConfig;

        let device = Device::flex().autodiff();
        for [batch, tokens, d_in, d_out] in [[1, 3, 5, 7], [7, 100, 96, 130]] {
            let what = format!("{batch}×{tokens}×{d_in}→{d_out}");
            let x = inputs(&device, [batch, tokens, d_in]).mul_scalar(0.1);
            let weights = inputs(&device, [batch * tokens, d_out, 1])
                .reshape([batch * tokens, d_out])
                .cos();
            let weight = || {
                inputs(&device, [1, d_in, d_out])
                    .reshape([d_in, d_out])
                    .sin()
            };
            let bias = || {
                inputs(&device, [1, 1, d_out])
                    .reshape([d_out])
                    .mul_scalar(0.3)
            };
            for frozen in [false, true] {
                let rows = x.clone().reshape([batch * tokens, d_in]).require_grad();
                let (w, b) = (weight(), bias().require_grad());
                let w = if frozen { w } else { w.require_grad() };
                let fused_y = linear(rows.clone(), w.clone(), b.clone());
                let fused = (fused_y.clone() * weights.clone()).sum().backward();
                let burn_y = rows.clone().matmul(w.clone()) + b.clone().unsqueeze::<2>();
                let burn = (burn_y.clone() * weights.clone()).sum().backward();
                let close = |a, b, part| assert_close(a, b, 2e-5, &format!("{what} {part}"));
                close(host_values(fused_y), host_values(burn_y), "linear output");
                close(
                    host_values(rows.grad(&fused).unwrap()),
                    host_values(rows.grad(&burn).unwrap()),
                    "linear input gradient",
                );
                close(
                    host_values(b.grad(&fused).unwrap()),
                    host_values(b.grad(&burn).unwrap()),
                    "linear bias gradient",
                );
                if frozen {
                    assert!(
                        w.grad(&fused).is_none(),
                        "{what}: frozen weight got a gradient"
                    );
                } else {
                    close(
                        host_values(w.grad(&fused).unwrap()),
                        host_values(w.grad(&burn).unwrap()),
                        "linear weight gradient",
                    );
                }
            }

            let norm = LayerNormConfig::new(d_in).with_epsilon(1e-5).init(&device);
            let gamma = bias().narrow(0, 0, 1).repeat_dim(0, d_in)
                + weight().narrow(1, 0, 1).reshape([d_in]);
            let beta = weight().narrow(1, 1, 1).reshape([d_in]).mul_scalar(0.5);
            let x = x.mul_scalar(10.0).require_grad();
            let (gamma, beta) = (gamma.detach().require_grad(), beta.detach().require_grad());
            let weights = inputs(&device, [batch, tokens, d_in]).cos();
            let fused_y = layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-5);
            let fused = (fused_y.clone() * weights.clone()).sum().backward();
            let mut burn_norm = norm;
            burn_norm.gamma = burn::module::Param::from_tensor(gamma.clone());
            burn_norm.beta = Some(burn::module::Param::from_tensor(beta.clone()));
            let burn_y = burn_norm.forward(x.clone());
            let burn = (burn_y.clone() * weights).sum().backward();
            let close = |a, b, part| assert_close(a, b, 2e-5, &format!("{what} {part}"));
            close(
                host_values(fused_y),
                host_values(burn_y),
                "layer norm output",
            );
            let both =
                |ours: Option<Vec<f32>>, theirs: Option<Vec<f32>>| (ours.unwrap(), theirs.unwrap());
            for ((ours, theirs), part) in [
                (
                    both(
                        x.grad(&fused).map(host_values),
                        x.grad(&burn).map(host_values),
                    ),
                    "layer norm input gradient",
                ),
                (
                    both(
                        gamma.grad(&fused).map(host_values),
                        gamma.grad(&burn).map(host_values),
                    ),
                    "layer norm scale gradient",
                ),
                (
                    both(
                        beta.grad(&fused).map(host_values),
                        beta.grad(&burn).map(host_values),
                    ),
                    "layer norm shift gradient",
                ),
            ] {
                close(ours, theirs, part);
            }
        }
    }

    /// Fused attention agrees with attention composed of Burn's tensor operations, output and
    /// the gradients of queries, keys and values: causal and not, one query to many keys (the
    /// ResNet's pooling), a non-contiguous input, and one key frozen; and the composition other
    /// backends run agrees with the CPU kernel.
    #[test]
    fn attention_matches_burns_composition() {
        use burn::backend::Flex;
        use burn::backend::flex::FlexTensor;

        let device = Device::flex().autodiff();
        for (batch, queries, keys, width, heads, causal) in [
            (3, 5, 5, 8, 2, true),
            (2, 1, 7, 12, 3, false),
            (4, 17, 17, 64, 4, false),
            (2, 9, 9, 32, 4, true),
        ] {
            let what =
                format!("{batch}×{queries}×{keys}, width {width}, {heads} heads, causal {causal}");
            let scaled = |shape: [usize; 3], by: f32| inputs(&device, shape).mul_scalar(by).sin();
            // Queries read through a transposed view, so the kernel sees a non-contiguous input.
            let q = scaled([batch, width, queries], 0.37)
                .swap_dims(1, 2)
                .require_grad();
            let k = scaled([batch, keys, width], 0.23).require_grad();
            let v = scaled([batch, keys, width], 0.51).require_grad();
            let weights = scaled([batch, queries, width], 0.11);
            let setting = AttentionSetting { heads, causal };

            let fused_y = attention(q.clone(), k.clone(), v.clone(), setting);
            let fused = (fused_y.clone() * weights.clone()).sum().backward();

            let head_width = width / heads;
            let split = |x: Tensor<3>, len: usize| {
                x.reshape([batch, len, heads, head_width]).swap_dims(1, 2)
            };
            let mut scores = split(q.clone(), queries)
                .matmul(split(k.clone(), keys).swap_dims(2, 3))
                .mul_scalar((head_width as f64).powf(-0.5));
            if causal {
                let mask: Vec<f32> = (0..queries * keys)
                    .map(|i| {
                        if i % keys > i / keys {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mask = Tensor::<1>::from_floats(mask.as_slice(), &device);
                scores = scores + mask.reshape([1, 1, queries, keys]);
            }
            let burn_y = softmax(scores, 3)
                .matmul(split(v.clone(), keys))
                .swap_dims(1, 2)
                .reshape([batch, queries, width]);
            let burn = (burn_y.clone() * weights).sum().backward();

            let close = |a: Vec<f32>, b: Vec<f32>, part: &str| {
                assert_close(a, b, 2e-5, &format!("{what}: {part}"))
            };
            close(host_values(fused_y), host_values(burn_y), "output");
            for (tensor, part) in [(&q, "query"), (&k, "key"), (&v, "value")] {
                close(
                    host_values(tensor.grad(&fused).unwrap()),
                    host_values(tensor.grad(&burn).unwrap()),
                    &format!("{part} gradient"),
                );
            }

            let frozen_k = scaled([batch, keys, width], 0.23);
            let y = attention(q.clone(), frozen_k.clone(), v.clone(), setting);
            let grads = y.sum().backward();
            assert!(
                frozen_k.grad(&grads).is_none(),
                "{what}: a frozen key got a gradient"
            );
            assert!(q.grad(&grads).is_some(), "{what}: no query gradient");

            let flex = |t: &Tensor<3>| FlexTensor::from_data(t.clone().detach().into_data());
            let host = |t: FlexTensor| t.into_data().try_into_vec::<f32>().unwrap();
            let primitives = || [flex(&q), flex(&k), flex(&v)];
            let [q1, k1, v1] = primitives();
            let [q2, k2, v2] = primitives();
            close(
                host(<Flex as FusedOps>::attention(q1, k1, v1, setting)),
                host(composed::attention::<Flex>(q2, k2, v2, setting)),
                "composition output",
            );
            let g = flex(&scaled([batch, queries, width], 0.29));
            let [q1, k1, v1] = primitives();
            let [q2, k2, v2] = primitives();
            let kernel = <Flex as FusedOps>::attention_backward(q1, k1, v1, g.clone(), setting);
            let composed = composed::attention_backward::<Flex>(q2, k2, v2, g, setting);
            for (ours, theirs, part) in [
                (kernel.0, composed.0, "query"),
                (kernel.1, composed.1, "key"),
                (kernel.2, composed.2, "value"),
            ] {
                close(
                    host(ours),
                    host(theirs),
                    &format!("composition {part} gradient"),
                );
            }
        }
    }

    /// What the trait's defaults run on wgpu (the compositions, Burn's batch-norm operation)
    /// agrees with the CPU kernels, backward passes included, both run on the CPU backend.
    #[test]
    fn default_compositions_match_the_cpu_kernels() {
        use burn::backend::Flex;
        use burn::backend::flex::FlexTensor;
        use burn::tensor::TensorData;

        let flex = |values: Vec<f32>, shape: Vec<usize>| {
            FlexTensor::from_data(TensorData::new(values, shape))
        };
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i + seed) * 7919) % 1013) as f32 / 90.0 - 5.0)
                .collect()
        };
        let host = |t: FlexTensor| t.into_data().try_into_vec::<f32>().unwrap();

        let shape = vec![4, 3, 6, 5];
        let n: usize = shape.iter().product();
        let (x, g) = (values(n, 0), values(n, 17));
        let rows = vec![12, 30];
        let y = host(<Flex as FusedOps>::softmax_last(flex(
            x.clone(),
            rows.clone(),
        )));
        for (fused, composed, what) in [
            (
                host(<Flex as FusedOps>::quick_gelu(flex(
                    x.clone(),
                    rows.clone(),
                ))),
                host(composed::quick_gelu::<Flex>(flex(x.clone(), rows.clone()))),
                "QuickGELU",
            ),
            (
                host(<Flex as FusedOps>::quick_gelu_backward(
                    flex(x.clone(), rows.clone()),
                    flex(g.clone(), rows.clone()),
                )),
                host(composed::quick_gelu_backward::<Flex>(
                    flex(x.clone(), rows.clone()),
                    flex(g.clone(), rows.clone()),
                )),
                "QuickGELU backward",
            ),
            (
                y.clone(),
                host(composed::softmax_last::<Flex>(flex(
                    x.clone(),
                    rows.clone(),
                ))),
                "softmax",
            ),
            (
                host(<Flex as FusedOps>::softmax_last_backward(
                    flex(y.clone(), rows.clone()),
                    flex(g.clone(), rows.clone()),
                )),
                host(composed::softmax_last_backward::<Flex>(
                    flex(y.clone(), rows.clone()),
                    flex(g.clone(), rows.clone()),
                )),
                "softmax backward",
            ),
        ] {
            assert_close(fused, composed, 1e-5, what);
        }

        let (gamma, beta) = (values(3, 5), values(3, 9));
        let (out, mean, var) = <Flex as FusedOps>::batch_norm_batch_stats(
            flex(x.clone(), shape.clone()),
            flex(gamma.clone(), vec![3]),
            flex(beta.clone(), vec![3]),
            1e-5,
        );
        let burn = <Flex as ModuleOps<Flex>>::batch_norm_train(
            flex(x.clone(), shape.clone()),
            flex(gamma.clone(), vec![3]),
            flex(beta, vec![3]),
            1e-5,
        );
        let (mean, var) = (host(mean), host(var));
        assert_close(host(out), host(burn.output), 2e-5, "batch norm");
        assert_close(mean.clone(), host(burn.mean), 2e-5, "batch mean");
        assert_close(var.clone(), host(burn.variance), 2e-5, "batch variance");
        let inputs = || {
            (
                flex(x.clone(), shape.clone()),
                flex(gamma.clone(), vec![3]),
                flex(mean.clone(), vec![3]),
                flex(var.clone(), vec![3]),
                flex(g.clone(), shape.clone()),
            )
        };
        let (x1, gamma1, mean1, var1, g1) = inputs();
        let (dx, dgamma, dbeta) =
            <Flex as FusedOps>::batch_norm_batch_stats_backward(x1, gamma1, mean1, var1, g1, 1e-5);
        let (x2, gamma2, mean2, var2, g2) = inputs();
        let burn =
            <Flex as ModuleOps<Flex>>::batch_norm_train_backward(x2, gamma2, mean2, var2, 1e-5, g2);
        assert_close(
            host(dx),
            host(burn.x_grad),
            2e-5,
            "batch norm input gradient",
        );
        assert_close(
            host(dgamma),
            host(burn.gamma_grad),
            2e-5,
            "batch norm scale gradient",
        );
        assert_close(
            host(dbeta),
            host(burn.beta_grad),
            2e-5,
            "batch norm shift gradient",
        );

        // The linear layer and the layer norm's backward pass, on rows of width 30.
        let (w, row_bias) = (values(30 * 4, 3), values(4, 7));
        let linear_inputs = || (flex(x.clone(), rows.clone()), flex(w.clone(), vec![30, 4]));
        let (x1, w1) = linear_inputs();
        let (x2, w2) = linear_inputs();
        assert_close(
            host(<Flex as FusedOps>::linear(
                x1,
                w1,
                flex(row_bias.clone(), vec![4]),
            )),
            host(composed::linear::<Flex>(x2, w2, flex(row_bias, vec![4]))),
            1e-5,
            "linear",
        );
        let out_grad = || flex(values(12 * 4, 11), vec![12, 4]);
        let (x1, w1) = linear_inputs();
        let (x2, w2) = linear_inputs();
        let ours = <Flex as FusedOps>::linear_backward(x1, w1, out_grad(), [true; 3]);
        let theirs = composed::linear_backward::<Flex>(x2, w2, out_grad());
        for (ours, theirs, what) in [
            (ours.0, theirs.0, "linear input gradient"),
            (ours.1, theirs.1, "linear weight gradient"),
            (ours.2, theirs.2, "linear bias gradient"),
        ] {
            assert_close(host(ours), host(theirs), 1e-5, what);
        }
        let gamma = values(30, 5);
        let norm_inputs = || {
            (
                flex(x.clone(), rows.clone()),
                flex(gamma.clone(), vec![30]),
                flex(g.clone(), rows.clone()),
            )
        };
        let (x1, gamma1, g1) = norm_inputs();
        let (x2, gamma2, g2) = norm_inputs();
        let ours = <Flex as FusedOps>::layer_norm_last_backward(x1, gamma1, g1, 1e-5, [true; 3]);
        let theirs = composed::layer_norm_last_backward::<Flex>(x2, gamma2, g2, 1e-5);
        for (ours, theirs, what) in [
            (ours.0, theirs.0, "layer norm input gradient"),
            (ours.1, theirs.1, "layer norm scale gradient"),
            (ours.2, theirs.2, "layer norm shift gradient"),
        ] {
            assert_close(host(ours), host(theirs), 2e-5, what);
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

    /// The convolution agrees with Burn's, output and both gradients, on strided, padded
    /// (symmetric or not), pointwise and tiny maps, with images grouped into one product or
    /// spread over many.
    #[test]
    fn convolution_matches_burns() {
        use burn::tensor::module::conv2d as burn_conv2d;

        let device = Device::flex().autodiff();
        let symmetric =
            |stride: usize, padding: usize| ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
        let cases = [
            ([5, 3, 13, 11], [4, 3, 3, 3], symmetric(2, 1)),
            ([20, 3, 16, 16], [4, 3, 3, 3], symmetric(1, 1)),
            ([3, 6, 7, 7], [8, 6, 1, 1], symmetric(1, 0)),
            ([2, 4, 16, 16], [5, 4, 1, 1], symmetric(1, 0)),
            ([9, 4, 2, 2], [6, 4, 3, 3], symmetric(1, 1)),
            ([2, 2, 4, 4], [3, 2, 3, 3], symmetric(3, 0)),
            (
                [3, 2, 6, 5],
                [2, 2, 3, 2],
                ConvOptions::new_with_padding([1, 2], [(0, 2), (1, 0)], [1, 1], 1),
            ),
        ];
        let tensor = |shape: [usize; 4], seed: usize| {
            let n = shape.iter().product::<usize>();
            let values: Vec<f32> = (0..n)
                .map(|i| (((i + seed) * 7919) % 1013) as f32 / 300.0 - 1.5)
                .collect();
            Tensor::<1>::from_floats(values.as_slice(), &device).reshape(shape)
        };
        for (x_shape, w_shape, options) in cases {
            let what = format!("{x_shape:?} * {w_shape:?}, {options:?}");
            let x = tensor(x_shape, 0).require_grad();
            let w = tensor(w_shape, 5).require_grad();
            let y = conv2d(x.clone(), w.clone(), options.clone());
            let reference = burn_conv2d(x.clone(), w.clone(), None, options);
            assert_eq!(y.dims(), reference.dims(), "{what}");
            let weights = tensor(y.dims(), 11);
            let grads = (y.clone() * weights.clone()).sum().backward();
            let reference_grads = (reference.clone() * weights).sum().backward();
            for (ours, theirs, part) in [
                (y.detach(), reference.detach(), "output"),
                (
                    x.grad(&grads).unwrap(),
                    x.grad(&reference_grads).unwrap(),
                    "input gradient",
                ),
                (
                    w.grad(&grads).unwrap(),
                    w.grad(&reference_grads).unwrap(),
                    "weight gradient",
                ),
            ] {
                assert_close(
                    host_values(ours),
                    host_values(theirs),
                    1e-5,
                    &format!("{what}: {part}"),
                );
            }
        }
    }

    /// Block average pooling agrees with Burn's, output and gradient, with and without rows
    /// and columns past the last whole block, on maps small and large enough to be split over
    /// threads.
    #[test]
    fn block_average_pool_matches_burns() {
        use burn::tensor::module::avg_pool2d;
        use burn::tensor::ops::AvgPoolOptions;

        let device = Device::flex().autodiff();
        for (shape, size) in [
            ([3, 4, 6, 6], 2),
            ([2, 3, 5, 7], 2),
            ([2, 2, 7, 6], 3),
            ([64, 16, 32, 32], 2),
        ] {
            let n = shape.iter().product::<usize>();
            let values: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 / 100.0).collect();
            let x = Tensor::<1>::from_floats(values.as_slice(), &device)
                .reshape(shape)
                .require_grad();
            let y = avg_pool_blocks(x.clone(), size);
            let reference = avg_pool2d(x.clone(), AvgPoolOptions::new([size, size]));
            assert_eq!(y.dims(), reference.dims(), "{shape:?} / {size}");
            let weights = y.clone().detach().sin();
            let grad = x
                .grad(&(y.clone() * weights.clone()).sum().backward())
                .unwrap();
            let reference_grad = x
                .grad(&(reference.clone() * weights).sum().backward())
                .unwrap();
            let what = format!("{shape:?} / {size}");
            assert_close(
                host_values(y.detach()),
                host_values(reference.detach()),
                1e-6,
                &what,
            );
            assert_close(host_values(grad), host_values(reference_grad), 1e-6, &what);
        }
    }
}
