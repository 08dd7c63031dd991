//! CLIP in Burn: the two towers, the joint embedding space and the checkpoint formats people
//! actually have on disk.

pub mod attention;
pub mod checkpoint;
pub mod config;
pub mod jpeg;
pub mod lora;
pub mod preprocess;
pub mod resnet;
pub mod safetensors_io;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod vit;
pub mod weights;

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use config::{ClipSpec, VisionSpec};
use resnet::ModifiedResNet;
use text::TextTransformer;
use vit::VisionTransformer;
use weights::{Bind, Format, Layout, ParamVisitor};

/// What a forward pass keeps besides the embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspect {
    /// Nothing: ordinary encoding.
    Nothing,
    /// Every attention map, for saliency from attention alone.
    Attention,
    /// The attention maps and a [`Probe`] at each point a saliency toward a text reads the
    /// gradient of (every attention map of a transformer; the last stage of a ResNet).
    Gradients,
}

/// A point of the forward pass watched for its gradient. Autodiff keeps gradients only for
/// leaf tensors, so a zero leaf is added at the point: that changes nothing forward, and the
/// zero's gradient after `backward` is the gradient at the point. Needs an autodiff device.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The value at the point.
    pub value: Tensor<4>,
    /// The zero leaf added to it.
    pub zero: Tensor<4>,
}

impl Probe {
    /// Watches `value`: returns what the forward pass goes on with (`value` plus the zero
    /// leaf) and the probe.
    pub fn watch(value: Tensor<4>) -> (Tensor<4>, Self) {
        let zero = value.zeros_like().detach().require_grad();
        let used = value.clone() + zero.clone();
        (used, Self { value, zero })
    }
}

/// What an encoder tower produced.
#[derive(Debug)]
pub struct TowerOutput {
    /// Projected, un-normalised embeddings `[b, embed]`.
    pub embeds: Tensor<2>,
    /// Per-block attention weights `[b, heads, queries, keys]` (empty unless asked for).
    pub attentions: Vec<Tensor<4>>,
    /// The probes [`Inspect::Gradients`] asked for, input side first (empty otherwise).
    pub probes: Vec<Probe>,
}

/// The image tower of a CLIP model.
#[derive(Module, Debug)]
pub enum VisionTower {
    /// Vision Transformer.
    Vit(VisionTransformer),
    /// ModifiedResNet.
    ResNet(ModifiedResNet),
}

impl VisionTower {
    /// Encodes normalised pixels `[b, 3, s, s]`, keeping what `inspect` asks for.
    pub fn forward(&self, pixels: Tensor<4>, inspect: Inspect) -> TowerOutput {
        match self {
            Self::Vit(tower) => tower.forward(pixels, inspect),
            Self::ResNet(tower) => tower.forward(pixels, inspect),
        }
    }
}

/// A CLIP model: image tower, text tower and the learned temperature.
#[derive(Module, Debug)]
pub struct Clip {
    /// Image tower.
    pub visual: VisionTower,
    /// Text tower.
    pub text: TextTransformer,
    /// Log of the logit scale, as stored by both reference implementations.
    pub logit_scale: Param<Tensor<1>>,
}

impl Clip {
    /// A zero-initialised model of the given shape; weights come from [`checkpoint`].
    pub fn new(spec: &ClipSpec, device: &Device) -> Self {
        let visual = match &spec.vision {
            VisionSpec::Vit(vit) => {
                VisionTower::Vit(VisionTransformer::new(vit, spec.embed_dim, device))
            }
            VisionSpec::ResNet(rn) => {
                VisionTower::ResNet(ModifiedResNet::new(rn, spec.embed_dim, device))
            }
        };
        Self {
            visual,
            text: TextTransformer::new(&spec.text, spec.embed_dim, device),
            logit_scale: Param::from_tensor(Tensor::zeros([1], device)),
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.logit_scale.val().device()
    }

    /// Width of the joint embedding space.
    pub fn embed_dim(&self) -> usize {
        self.text.proj.dims()[1]
    }

    /// Projected, un-normalised image embeddings `[b, embed]`.
    pub fn encode_image(&self, pixels: Tensor<4>) -> Tensor<2> {
        self.visual.forward(pixels, Inspect::Nothing).embeds
    }

    /// Image embeddings together with the attention maps (for saliency).
    pub fn encode_image_with_attention(&self, pixels: Tensor<4>) -> TowerOutput {
        self.visual.forward(pixels, Inspect::Attention)
    }

    /// Projected, un-normalised text embeddings `[b, embed]` for tokenised rows.
    pub fn encode_text(&self, ids: &[Vec<u32>]) -> Tensor<2> {
        self.text.forward(ids, Inspect::Nothing).embeds
    }

    /// Text embeddings together with the attention maps.
    pub fn encode_text_with_attention(&self, ids: &[Vec<u32>]) -> TowerOutput {
        self.text.forward(ids, Inspect::Attention)
    }

    /// Image-to-text logits `[images, texts]`: scaled cosine similarities, as CLIP computes them.
    pub fn logits(&self, image_embeds: Tensor<2>, text_embeds: Tensor<2>) -> Tensor<2> {
        let scale = self.logit_scale.val().exp().unsqueeze::<2>();
        normalize(image_embeds)
            .matmul(normalize(text_embeds).transpose())
            .mul(scale)
    }
}

/// Copies a tensor's values to the host as `f32`, whatever its dtype or device.
pub fn host_values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("float tensors convert to f32")
}

/// Labels or row indices as an integer tensor on `device`, for `select`, `gather` and losses.
pub fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(
        TensorData::new(indices.iter().map(|&i| i as i64).collect(), [indices.len()]),
        device,
    )
}

/// Copies a matrix to the host as one `Vec` per row.
pub fn host_rows(tensor: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, width] = tensor.dims();
    host_values(tensor)
        .chunks(width.max(1))
        .map(<[f32]>::to_vec)
        .collect()
}

/// Scales each row to unit L2 norm.
pub fn normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt();
    x / norm
}

impl Bind for Clip {
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, format: Format) {
        match &mut self.visual {
            VisionTower::Vit(tower) => tower.bind(visitor, prefix, format),
            VisionTower::ResNet(tower) => tower.bind(visitor, prefix, format),
        }
        self.text.bind(visitor, prefix, format);
        visitor.param(
            &format!("{prefix}logit_scale"),
            &mut self.logit_scale,
            Layout::Scalar,
        );
    }
}
