//! The parameter ("layer") view of a model that unlearning methods select from.
//!
//! A "layer" is one parameter tensor, named by its open_clip key whatever format the model
//! came in, because that is the granularity the methods rank and update (Lip updates the k
//! parameters with the largest mean |gradient| in each tower) and the names people know from
//! the papers' figures. Optimisers key their state by [`ParamId`]; restricting the gradients
//! handed to a step to the chosen ids is what keeps every other parameter bit-identical.

use std::collections::HashSet;

use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Gradients, Tensor};

use crate::clip::Clip;
use crate::clip::weights::{Bind, Format, Layout, ParamVisitor};

/// Which part of CLIP a parameter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tower {
    /// The image encoder.
    Vision,
    /// The text encoder.
    Text,
    /// The shared learned temperature.
    Temperature,
}

/// One parameter tensor of a model.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// The open_clip key; the three parts of a fused attention input projection get `#q`,
    /// `#k` and `#v` appended.
    pub key: String,
    /// Its tower.
    pub tower: Tower,
    /// The id optimisers and gradients know it by.
    pub id: ParamId,
    /// Number of values.
    pub numel: usize,
}

impl LayerInfo {
    /// The checkpoint key the tensor is stored under (the fused key for a projection part).
    pub fn checkpoint_key(&self) -> &str {
        self.key.split('#').next().unwrap_or(&self.key)
    }

    /// Whether this is part of a ModifiedResNet's attention-pooling head, the only vision
    /// parameters Lip lets change in a ResNet (the paper found the rest over-forgets).
    pub fn is_attention_pool(&self) -> bool {
        self.key.starts_with("visual.attnpool.")
    }
}

struct Lister(Vec<LayerInfo>);

impl Lister {
    fn push<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>) {
        let tower = if key == "logit_scale" {
            Tower::Temperature
        } else if key.starts_with("visual.") {
            Tower::Vision
        } else {
            Tower::Text
        };
        self.0.push(LayerInfo {
            key,
            tower,
            id: param.id,
            numel: param.lazy_shape().num_elements(),
        });
    }
}

impl ParamVisitor for Lister {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, _: Layout) {
        self.push(key.to_string(), param);
    }

    fn fused<const D: usize>(&mut self, key: &str, parts: [&mut Param<Tensor<D>>; 3], _: Layout) {
        for (part, param) in ["q", "k", "v"].into_iter().zip(parts) {
            self.push(format!("{key}#{part}"), param);
        }
    }
}

/// Every parameter of `model`, in checkpoint order.
pub fn layers(model: &Clip) -> Vec<LayerInfo> {
    let mut lister = Lister(Vec::new());
    model.clone().bind(&mut lister, "", Format::OpenClip);
    lister.0
}

/// The gradients of the `selected` parameters only, ready for an optimiser step that must
/// leave every other parameter exactly as it is.
pub fn selected_gradients(
    mut gradients: Gradients,
    model: &Clip,
    selected: &HashSet<ParamId>,
) -> GradientsParams {
    let ids: Vec<ParamId> = selected.iter().copied().collect();
    GradientsParams::from_params(&mut gradients, model, &ids)
}
