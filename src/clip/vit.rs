//! The Vision Transformer image tower.

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

use super::config::VitSpec;
use super::transformer::{Transformer, TransformerOutput, layer_norm};
use super::weights::{Bind, Format, Layout, ParamVisitor, bind_layer_norm};
use super::{Inspect, TowerOutput};

/// Patch embedding, class token, positional embedding, transformer, projection.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Patch stem `[width, 3, patch, patch]`, no bias.
    pub patch_embed: Param<Tensor<4>>,
    /// Class token `[width]`.
    pub class_embed: Param<Tensor<1>>,
    /// Positional embedding `[grid² + 1, width]`.
    pub positions: Param<Tensor<2>>,
    /// Norm before the transformer.
    pub norm_pre: LayerNorm,
    /// The transformer.
    pub transformer: Transformer,
    /// Norm on the class token after the transformer.
    pub norm_post: LayerNorm,
    /// Projection into the joint space `[width, embed]` (used as `x @ proj`).
    pub proj: Param<Tensor<2>>,
    patch_size: usize,
}

impl VisionTransformer {
    /// A zero-initialised tower of the given shape.
    pub fn new(spec: &VitSpec, embed_dim: usize, device: &Device) -> Self {
        let width = spec.transformer.width;
        let eps = spec.transformer.layer_norm_eps;
        Self {
            patch_embed: Param::from_tensor(Tensor::zeros(
                [width, 3, spec.patch_size, spec.patch_size],
                device,
            )),
            class_embed: Param::from_tensor(Tensor::zeros([width], device)),
            positions: Param::from_tensor(Tensor::zeros(
                [spec.grid() * spec.grid() + 1, width],
                device,
            )),
            norm_pre: layer_norm(width, eps, device),
            transformer: Transformer::new(&spec.transformer, device),
            norm_post: layer_norm(width, eps, device),
            proj: Param::from_tensor(Tensor::zeros([width, embed_dim], device)),
            patch_size: spec.patch_size,
        }
    }

    /// Encodes normalised pixels `[b, 3, s, s]`, keeping what `inspect` asks for.
    pub fn forward(&self, pixels: Tensor<4>, inspect: Inspect) -> TowerOutput {
        let batch = pixels.dims()[0];
        let patches = conv2d(
            pixels,
            self.patch_embed.val(),
            None,
            ConvOptions::new([self.patch_size; 2], [0, 0], [1, 1], 1),
        );
        let [_, width, gh, gw] = patches.dims();
        let tokens = patches.reshape([batch, width, gh * gw]).swap_dims(1, 2);
        let class = self
            .class_embed
            .val()
            .reshape([1, 1, width])
            .expand([batch, 1, width]);
        let x = Tensor::cat(vec![class, tokens], 1) + self.positions.val().unsqueeze::<3>();
        let TransformerOutput {
            read: class_state,
            attentions,
            probes,
        } = self
            .transformer
            .forward(self.norm_pre.forward(x), false, inspect, &vec![0; batch]);
        TowerOutput {
            embeds: self.norm_post.forward(class_state).matmul(self.proj.val()),
            attentions,
            probes,
        }
    }
}

impl Bind for VisionTransformer {
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, format: Format) {
        match format {
            Format::HuggingFace => {
                let p = format!("{prefix}vision_model.");
                visitor.param(
                    &format!("{p}embeddings.patch_embedding.weight"),
                    &mut self.patch_embed,
                    Layout::AsIs,
                );
                visitor.param(
                    &format!("{p}embeddings.class_embedding"),
                    &mut self.class_embed,
                    Layout::AsIs,
                );
                visitor.param(
                    &format!("{p}embeddings.position_embedding.weight"),
                    &mut self.positions,
                    Layout::AsIs,
                );
                bind_layer_norm(visitor, &mut self.norm_pre, &format!("{p}pre_layrnorm."));
                self.transformer
                    .bind(visitor, &format!("{p}encoder."), format);
                bind_layer_norm(visitor, &mut self.norm_post, &format!("{p}post_layernorm."));
                visitor.param(
                    &format!("{prefix}visual_projection.weight"),
                    &mut self.proj,
                    Layout::Transposed,
                );
            }
            Format::OpenClip => {
                let p = format!("{prefix}visual.");
                visitor.param(
                    &format!("{p}conv1.weight"),
                    &mut self.patch_embed,
                    Layout::AsIs,
                );
                visitor.param(
                    &format!("{p}class_embedding"),
                    &mut self.class_embed,
                    Layout::AsIs,
                );
                visitor.param(
                    &format!("{p}positional_embedding"),
                    &mut self.positions,
                    Layout::AsIs,
                );
                bind_layer_norm(visitor, &mut self.norm_pre, &format!("{p}ln_pre."));
                self.transformer
                    .bind(visitor, &format!("{p}transformer."), format);
                bind_layer_norm(visitor, &mut self.norm_post, &format!("{p}ln_post."));
                visitor.param(&format!("{p}proj"), &mut self.proj, Layout::AsIs);
            }
        }
    }
}
