//! Multi-head attention that also hands back its attention weights.
//!
//! CLIP's text and vision transformers and the ResNet attention-pooling head all use this one
//! implementation; saliency maps (attention rollout) read the weights it returns.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::weights::{Bind, Format, Layout, ParamVisitor, bind_linear};
use super::{Inspect, Probe};
use crate::fused::AttentionSetting;

/// Builds a zero-initialised linear layer; real values always come from a checkpoint or an
/// explicit initialisation, so nothing is drawn at random here.
pub(crate) fn zero_linear(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// Applies `linear` to every token of `x` `[batch, tokens, in]` as one `[batch·tokens, in]`
/// product. Burn keeps a three-dimensional input as `batch` separate products when folding would
/// make the output less square, and on the CPU each of those packs the weight anew: for a
/// transformer's projections that was most of a training step's matrix-multiply time. With a
/// bias the product and the bias are one fused operation ([`crate::fused::linear`]).
pub(crate) fn linear_tokens(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, tokens, width] = x.dims();
    let rows = x.reshape([batch * tokens, width]);
    let out = match &linear.bias {
        Some(bias) => crate::fused::linear(rows, linear.weight.val(), bias.val()),
        None => linear.forward(rows),
    };
    let out_width = out.dims()[1];
    out.reshape([batch, tokens, out_width])
}

/// The tokens of `x` `[batch, tokens, width]` at `rows`, one row of the flattened
/// `[batch·tokens, width]` per sequence: `[batch, 1, width]`.
pub(crate) fn pick_tokens(x: Tensor<3>, rows: Tensor<1, Int>) -> Tensor<3> {
    let [batch, tokens, width] = x.dims();
    x.reshape([batch * tokens, width])
        .select(0, rows)
        .reshape([batch, 1, width])
}

/// Attention with separate query, key, value and output projections.
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub out: Linear,
    heads: usize,
}

/// The result of an attention call.
#[derive(Debug)]
pub struct AttentionOutput {
    /// `[batch, queries, width]` after the output projection.
    pub output: Tensor<3>,
    /// `[batch, heads, queries, keys]` softmax weights, unless [`Inspect::Nothing`] was asked.
    pub weights: Option<Tensor<4>>,
    /// The probe on the weights, when one was asked for.
    pub probe: Option<Probe>,
}

impl MultiHeadAttention {
    /// A zero-initialised attention block of the given width, with biases.
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Self {
            q: zero_linear(width, width, true, device),
            k: zero_linear(width, width, true, device),
            v: zero_linear(width, width, true, device),
            out: zero_linear(width, width, true, device),
            heads,
        }
    }

    /// Attends from `query` `[b, lq, d]` to `context` `[b, lk, d]`; with `causal`, position `i`
    /// sees only positions `0..=i`. [`Inspect::Nothing`] runs the fused operation
    /// ([`crate::fused::attention`]), which keeps no weights; otherwise the weights are
    /// computed as tensors and returned, and with [`Inspect::Gradients`] they pass through a
    /// [`Probe`], so a backward pass can read the gradient with respect to them.
    pub fn forward(
        &self,
        query: Tensor<3>,
        context: Tensor<3>,
        causal: bool,
        inspect: Inspect,
    ) -> AttentionOutput {
        self.forward_at(query, context, causal, inspect, None)
    }

    /// [`MultiHeadAttention::forward`]; with `only` (rows as [`pick_tokens`] takes them), the
    /// output is one query position's per sequence, `[b, 1, width]`: the output projection
    /// runs on those rows alone.
    pub(crate) fn forward_at(
        &self,
        query: Tensor<3>,
        context: Tensor<3>,
        causal: bool,
        inspect: Inspect,
        only: Option<&Tensor<1, Int>>,
    ) -> AttentionOutput {
        let q = linear_tokens(&self.q, query);
        let k = linear_tokens(&self.k, context.clone());
        let v = linear_tokens(&self.v, context);
        let setting = AttentionSetting {
            heads: self.heads,
            causal,
        };
        let (mixed, weights, probe) = if inspect == Inspect::Nothing {
            (crate::fused::attention(q, k, v, setting), None, None)
        } else {
            let (mixed, weights, probe) =
                inspected_attention(q, k, v, setting, inspect == Inspect::Gradients);
            (mixed, Some(weights), probe)
        };
        let mixed = match only {
            Some(rows) => pick_tokens(mixed, rows.clone()),
            None => mixed,
        };
        AttentionOutput {
            output: linear_tokens(&self.out, mixed),
            weights,
            probe,
        }
    }
}

/// Attention composed of tensor operations, so that the weights `[b, heads, lq, lk]` exist as a
/// tensor to return and, with `probe`, to watch: the heads' mixed values `[b, lq, width]`, the
/// weights and the probe.
fn inspected_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    setting: AttentionSetting,
    probe: bool,
) -> (Tensor<3>, Tensor<4>, Option<Probe>) {
    let [batch, lq, width] = q.dims();
    let lk = k.dims()[1];
    let head_dim = width / setting.heads;
    let split = |x: Tensor<3>, len: usize| {
        x.reshape([batch, len, setting.heads, head_dim])
            .swap_dims(1, 2)
    };
    let scale = (head_dim as f64).powf(-0.5);
    let (q, k, v) = (split(q, lq).mul_scalar(scale), split(k, lk), split(v, lk));
    let mut scores = q.matmul(k.swap_dims(2, 3));
    if setting.causal {
        let mask = TensorData::new(crate::fused::causal_mask(lq, lk), [lq, lk]);
        let mask = Tensor::<2>::from_data(mask, &scores.device());
        scores = scores + mask.unsqueeze::<4>();
    }
    let weights = crate::fused::softmax_last(scores);
    let (used, probe) = if probe {
        let (used, probe) = Probe::watch(weights.clone());
        (used, Some(probe))
    } else {
        (weights.clone(), None)
    };
    let mixed = used.matmul(v).swap_dims(1, 2).reshape([batch, lq, width]);
    (mixed, weights, probe)
}

impl Bind for MultiHeadAttention {
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, format: Format) {
        match format {
            Format::HuggingFace => {
                bind_linear(visitor, &mut self.q, &format!("{prefix}q_proj."));
                bind_linear(visitor, &mut self.k, &format!("{prefix}k_proj."));
                bind_linear(visitor, &mut self.v, &format!("{prefix}v_proj."));
                bind_linear(visitor, &mut self.out, &format!("{prefix}out_proj."));
            }
            Format::OpenClip => {
                let [q, k, v] = [&mut self.q, &mut self.k, &mut self.v];
                visitor.fused(
                    &format!("{prefix}in_proj_weight"),
                    [&mut q.weight, &mut k.weight, &mut v.weight],
                    Layout::Transposed,
                );
                if let (Some(qb), Some(kb), Some(vb)) =
                    (q.bias.as_mut(), k.bias.as_mut(), v.bias.as_mut())
                {
                    visitor.fused(&format!("{prefix}in_proj_bias"), [qb, kb, vb], Layout::AsIs);
                }
                bind_linear(visitor, &mut self.out, &format!("{prefix}out_proj."));
            }
        }
    }
}
