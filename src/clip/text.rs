//! The causal text transformer, pooled at the end-of-text token.

use std::cmp::Reverse;

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::module::embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{TextPooling, TextSpec};
use super::transformer::{Transformer, TransformerOutput, layer_norm};
use super::weights::{Bind, Format, Layout, ParamVisitor, bind_layer_norm};
use super::{Inspect, TowerOutput};

/// Token and positional embeddings, causal transformer, final norm, projection.
#[derive(Module, Debug)]
pub struct TextTransformer {
    /// Token embedding `[vocab, width]`.
    pub token_embed: Param<Tensor<2>>,
    /// Positional embedding `[context, width]`.
    pub positions: Param<Tensor<2>>,
    /// The causal transformer.
    pub transformer: Transformer,
    /// Norm after the transformer.
    pub norm_final: LayerNorm,
    /// Projection into the joint space `[width, embed]` (used as `x @ proj`).
    pub proj: Param<Tensor<2>>,
    #[module(skip)]
    pooling: TextPooling,
}

impl TextTransformer {
    /// A zero-initialised tower of the given shape.
    pub fn new(spec: &TextSpec, embed_dim: usize, device: &Device) -> Self {
        let width = spec.transformer.width;
        Self {
            token_embed: Param::from_tensor(Tensor::zeros([spec.vocab_size, width], device)),
            positions: Param::from_tensor(Tensor::zeros([spec.context_length, width], device)),
            transformer: Transformer::new(&spec.transformer, device),
            norm_final: layer_norm(width, spec.transformer.layer_norm_eps, device),
            proj: Param::from_tensor(Tensor::zeros([width, embed_dim], device)),
            pooling: spec.pooling,
        }
    }

    /// The position each text is pooled at, computed on the host from the ids so that ties
    /// resolve exactly as the reference does (first occurrence).
    pub fn pool_positions(&self, ids: &[Vec<u32>]) -> Vec<usize> {
        ids.iter()
            .map(|row| {
                let found = match self.pooling {
                    TextPooling::ArgmaxId => row
                        .iter()
                        .enumerate()
                        .max_by_key(|&(i, &id)| (id, Reverse(i)))
                        .map(|(i, _)| i),
                    TextPooling::FirstId(eos) => row.iter().position(|&id| id == eos),
                };
                found.unwrap_or(row.len().saturating_sub(1))
            })
            .collect()
    }

    /// Encodes token id rows (all of the model's context length).
    ///
    /// Attention is causal, so no position after the last pooled one can reach a pooled
    /// output: plain encoding stops there, which spares the padding of short prompts (most of
    /// a 77-token context) and changes no embedding. The maps [`Inspect`] asks for cover every
    /// position.
    pub fn forward(&self, ids: &[Vec<u32>], inspect: Inspect) -> TowerOutput {
        let device = self.positions.val().device();
        let batch = ids.len();
        let pool_positions = self.pool_positions(ids);
        let len = match inspect {
            Inspect::Nothing => pool_positions.iter().max().map_or(0, |&last| last + 1),
            Inspect::Attention | Inspect::Gradients => ids.first().map_or(0, Vec::len),
        };
        let flat: Vec<i64> = ids
            .iter()
            .flat_map(|row| &row[..len])
            .map(|&id| id as i64)
            .collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, len]), &device);
        let x = embedding(self.token_embed.val(), tokens)
            + self.positions.val().narrow(0, 0, len).unsqueeze::<3>();
        let TransformerOutput {
            read: pooled,
            attentions,
            probes,
        } = self.transformer.forward(x, true, inspect, &pool_positions);
        TowerOutput {
            embeds: self.norm_final.forward(pooled).matmul(self.proj.val()),
            attentions,
            probes,
        }
    }
}

impl Bind for TextTransformer {
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, format: Format) {
        match format {
            Format::HuggingFace => {
                let p = format!("{prefix}text_model.");
                visitor.param(
                    &format!("{p}embeddings.token_embedding.weight"),
                    &mut self.token_embed,
                    Layout::AsIs,
                );
                visitor.param(
                    &format!("{p}embeddings.position_embedding.weight"),
                    &mut self.positions,
                    Layout::AsIs,
                );
                self.transformer
                    .bind(visitor, &format!("{p}encoder."), format);
                bind_layer_norm(
                    visitor,
                    &mut self.norm_final,
                    &format!("{p}final_layer_norm."),
                );
                visitor.param(
                    &format!("{prefix}text_projection.weight"),
                    &mut self.proj,
                    Layout::Transposed,
                );
            }
            Format::OpenClip => {
                visitor.param(
                    &format!("{prefix}token_embedding.weight"),
                    &mut self.token_embed,
                    Layout::AsIs,
                );
                visitor.param(
                    &format!("{prefix}positional_embedding"),
                    &mut self.positions,
                    Layout::AsIs,
                );
                self.transformer
                    .bind(visitor, &format!("{prefix}transformer."), format);
                bind_layer_norm(visitor, &mut self.norm_final, &format!("{prefix}ln_final."));
                visitor.param(
                    &format!("{prefix}text_projection"),
                    &mut self.proj,
                    Layout::AsIs,
                );
            }
        }
    }
}
