//! The pre-norm residual transformer shared by CLIP's text tower and Vision Transformer.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, gelu_approximate};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::attention::{
    AttentionOutput, MultiHeadAttention, linear_tokens, pick_tokens, zero_linear,
};
use super::config::{Activation, TransformerSpec};
use super::weights::{Bind, Format, ParamVisitor, bind_layer_norm, bind_linear};
use super::{Inspect, Probe};

/// A layer norm with the given epsilon (weights are replaced by the checkpoint's).
pub(crate) fn layer_norm(width: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(width).with_epsilon(eps).init(device)
}

/// `norm(x)` as one fused autodiff node (under autodiff Burn records a dozen operations for a
/// layer norm, each a pass of its own over the activations); the same values either way.
fn normalise(norm: &LayerNorm, x: Tensor<3>, eps: f64) -> Tensor<3> {
    match &norm.beta {
        Some(beta) => crate::fused::layer_norm(x, norm.gamma.val(), beta.val(), eps),
        None => norm.forward(x),
    }
}

/// Applies the MLP non-linearity.
pub fn activate<const D: usize>(x: Tensor<D>, activation: Activation) -> Tensor<D> {
    match activation {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::QuickGelu => crate::fused::quick_gelu(x),
    }
}

/// Attention then MLP, each behind a layer norm and a residual connection.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// Norm before attention.
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attention: MultiHeadAttention,
    /// Norm before the MLP.
    pub norm2: LayerNorm,
    /// MLP expansion.
    pub fc1: Linear,
    /// MLP projection back to the width.
    pub fc2: Linear,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    layer_norm_eps: f64,
}

impl ResidualBlock {
    fn new(spec: &TransformerSpec, device: &Device) -> Self {
        Self {
            norm1: layer_norm(spec.width, spec.layer_norm_eps, device),
            attention: MultiHeadAttention::new(spec.width, spec.heads, device),
            norm2: layer_norm(spec.width, spec.layer_norm_eps, device),
            fc1: zero_linear(spec.width, spec.mlp_width, true, device),
            fc2: zero_linear(spec.mlp_width, spec.width, true, device),
            activation: spec.activation,
            layer_norm_eps: spec.layer_norm_eps,
        }
    }

    /// Runs the block (causal attention where `causal` says); also returns the attention
    /// weights `[b, heads, l, l]` and a probe on them, as `inspect` asks. With `only` (rows as
    /// [`pick_tokens`] takes them), the block's output is one position's per sequence,
    /// `[b, 1, width]`: past the attention, which every position feeds, the block computes
    /// those rows alone.
    pub fn forward(
        &self,
        x: Tensor<3>,
        causal: bool,
        inspect: Inspect,
        only: Option<&Tensor<1, Int>>,
    ) -> (Tensor<3>, Option<Tensor<4>>, Option<Probe>) {
        let normed = normalise(&self.norm1, x.clone(), self.layer_norm_eps);
        let AttentionOutput {
            output,
            weights,
            probe,
        } = self
            .attention
            .forward_at(normed.clone(), normed, causal, inspect, only);
        let residual = match only {
            Some(rows) => pick_tokens(x, rows.clone()),
            None => x,
        };
        let x = residual + output;
        let hidden = activate(
            linear_tokens(
                &self.fc1,
                normalise(&self.norm2, x.clone(), self.layer_norm_eps),
            ),
            self.activation,
        );
        (x + linear_tokens(&self.fc2, hidden), weights, probe)
    }
}

impl Bind for ResidualBlock {
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, format: Format) {
        let (norm1, attn, norm2, fc1, fc2) = match format {
            Format::HuggingFace => (
                "layer_norm1.",
                "self_attn.",
                "layer_norm2.",
                "mlp.fc1.",
                "mlp.fc2.",
            ),
            Format::OpenClip => ("ln_1.", "attn.", "ln_2.", "mlp.c_fc.", "mlp.c_proj."),
        };
        bind_layer_norm(visitor, &mut self.norm1, &format!("{prefix}{norm1}"));
        self.attention
            .bind(visitor, &format!("{prefix}{attn}"), format);
        bind_layer_norm(visitor, &mut self.norm2, &format!("{prefix}{norm2}"));
        bind_linear(visitor, &mut self.fc1, &format!("{prefix}{fc1}"));
        bind_linear(visitor, &mut self.fc2, &format!("{prefix}{fc2}"));
    }
}

/// A stack of residual blocks.
#[derive(Module, Debug)]
pub struct Transformer {
    /// The blocks, input first.
    pub blocks: Vec<ResidualBlock>,
}

/// What a transformer pass produced.
#[derive(Debug)]
pub struct TransformerOutput {
    /// Final hidden state `[b, width]` of each sequence at its read position.
    pub read: Tensor<2>,
    /// Attention weights of every block, when they were asked for.
    pub attentions: Vec<Tensor<4>>,
    /// A probe on every block's attention weights, when gradients were asked for.
    pub probes: Vec<Probe>,
}

impl Transformer {
    /// A zero-initialised transformer of the given shape.
    pub fn new(spec: &TransformerSpec, device: &Device) -> Self {
        Self {
            blocks: (0..spec.layers)
                .map(|_| ResidualBlock::new(spec, device))
                .collect(),
        }
    }

    /// Runs every block and returns each sequence's final state at its position in `read`
    /// (one position per sequence: a ViT's class token, a text's end-of-text token); keeps the attention weights (and
    /// probes on them) only as `inspect` asks, so ordinary encoding does not hold them in
    /// memory.
    ///
    /// No other position's output of the last block reaches the read one, so past its
    /// attention the last block computes the read rows alone: its output projection and MLP,
    /// three quarters of its work. The attention itself still runs for every query (a small
    /// part of the work), so the maps `inspect` asks for are whole and the read rows are those
    /// of a full pass to the last bit; the matrix-product library sums a single query, or a
    /// single row, in another order. For that reason one sequence runs the full last block.
    pub fn forward(
        &self,
        mut x: Tensor<3>,
        causal: bool,
        inspect: Inspect,
        read: &[usize],
    ) -> TransformerOutput {
        let [batch, positions, width] = x.dims();
        let rows: Vec<i64> = read
            .iter()
            .enumerate()
            .map(|(sequence, &position)| (sequence * positions + position) as i64)
            .collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [read.len()]), &x.device());
        let last_reads_alone = batch > 1 && !self.blocks.is_empty();
        let last = self.blocks.len().saturating_sub(1);
        let mut attentions = Vec::new();
        let mut probes = Vec::new();
        for (index, block) in self.blocks.iter().enumerate() {
            let only = (last_reads_alone && index == last).then_some(&rows);
            let (next, weights, probe) = block.forward(x, causal, inspect, only);
            x = next;
            attentions.extend(weights);
            probes.extend(probe);
        }
        if !last_reads_alone {
            x = pick_tokens(x, rows);
        }
        TransformerOutput {
            read: x.reshape([batch, width]),
            attentions,
            probes,
        }
    }
}

impl Bind for Transformer {
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, format: Format) {
        let layers = match format {
            Format::HuggingFace => "layers",
            Format::OpenClip => "resblocks",
        };
        for (i, block) in self.blocks.iter_mut().enumerate() {
            block.bind(visitor, &format!("{prefix}{layers}.{i}."), format);
        }
    }
}
