//! One walk over a model's parameters, keyed by the checkpoint's own tensor names.
//!
//! Every module describes its parameters once, in [`Bind`], with the key and layout each has in
//! the checkpoint format it came from. Loading, exporting and reading gradients are visitors over
//! that single description, so the three can never disagree about a name or a transpose.

use burn::module::Param;
use burn::tensor::Tensor;

/// The on-disk layout a checkpoint uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Hugging Face `CLIPModel` (`config.json` + `model.safetensors`).
    HuggingFace,
    /// open_clip (`open_clip_config.json` + `open_clip_model.safetensors`).
    OpenClip,
}

/// How a parameter is stored on disk relative to Lethe's tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Same shape and order.
    AsIs,
    /// A 2-D matrix stored as PyTorch's `nn.Linear` `[out, in]`; Lethe keeps `[in, out]`.
    Transposed,
    /// A 0-D scalar on disk, a 1-element vector in Lethe.
    Scalar,
}

impl Layout {
    /// The shape the tensor has on disk, given Lethe's shape.
    pub fn disk_shape(self, dims: &[usize]) -> Vec<usize> {
        match self {
            Self::AsIs => dims.to_vec(),
            Self::Transposed => dims.iter().rev().copied().collect(),
            Self::Scalar => Vec::new(),
        }
    }

    /// Converts between Lethe's layout and the disk layout (a transpose is its own inverse, so
    /// the same call serves loading and saving). A transpose is a view of the other order.
    pub fn swap<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Transposed => tensor.transpose(),
            Self::AsIs | Self::Scalar => tensor,
        }
    }

    /// A tensor in the disk layout as a parameter in Lethe's layout, its values laid out in
    /// that order. Left a transposed view, every product with the weight would read it column
    /// by column, which the CPU's matrix kernel packs and multiplies markedly slower.
    pub fn from_disk<const D: usize>(self, tensor: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Transposed => {
                let device = tensor.device();
                Tensor::from_data(tensor.transpose().into_data(), &device)
            }
            Self::AsIs | Self::Scalar => tensor,
        }
    }
}

/// Something that walks a model's parameters by checkpoint key.
pub trait ParamVisitor {
    /// One parameter stored under `key`.
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, layout: Layout);

    /// Several parameters stored concatenated along the disk tensor's first axis under one key
    /// (open_clip's fused `in_proj_weight` / `in_proj_bias`).
    fn fused<const D: usize>(
        &mut self,
        key: &str,
        parts: [&mut Param<Tensor<D>>; 3],
        layout: Layout,
    );
}

/// A module that can describe its parameters for a checkpoint format.
pub trait Bind {
    /// Visits every parameter under `prefix` (which ends with '.' or is empty).
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, format: Format);
}

/// Binds a `burn` linear layer stored as PyTorch `nn.Linear` (`weight` `[out, in]`, `bias`).
pub fn bind_linear<V: ParamVisitor>(visitor: &mut V, linear: &mut burn::nn::Linear, prefix: &str) {
    visitor.param(
        &format!("{prefix}weight"),
        &mut linear.weight,
        Layout::Transposed,
    );
    if let Some(bias) = linear.bias.as_mut() {
        visitor.param(&format!("{prefix}bias"), bias, Layout::AsIs);
    }
}

/// Binds a `burn` layer norm stored as PyTorch `nn.LayerNorm` (`weight`, `bias`).
pub fn bind_layer_norm<V: ParamVisitor>(
    visitor: &mut V,
    norm: &mut burn::nn::LayerNorm,
    prefix: &str,
) {
    visitor.param(&format!("{prefix}weight"), &mut norm.gamma, Layout::AsIs);
    if let Some(beta) = norm.beta.as_mut() {
        visitor.param(&format!("{prefix}bias"), beta, Layout::AsIs);
    }
}
