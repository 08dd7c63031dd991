//! The two demo architectures, described as open_clip configurations so that the trained
//! models are ordinary open_clip checkpoints, loaded by the same code as any other.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

use crate::clip::config::{self, CLIP_MEAN, CLIP_STD, ClipSpec};

/// Which demo model to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoArch {
    /// `shapes-vit`: a 4-layer ViT with 8×8 patches on 64×64 images.
    Vit,
    /// `shapes-rn`: a small ModifiedResNet (one bottleneck per stage, with batch norm) and
    /// attention pooling.
    Rn,
}

impl DemoArch {
    /// The model's name, as written into its configuration.
    pub fn model_name(self) -> &'static str {
        match self {
            Self::Vit => "shapes-vit",
            Self::Rn => "shapes-rn",
        }
    }

    /// The complete `open_clip_config.json` of the model.
    pub fn open_clip_config(self) -> Value {
        let vision = match self {
            Self::Vit => json!({
                "image_size": 64, "patch_size": 8, "width": 128, "head_width": 32, "layers": 4,
            }),
            Self::Rn => json!({
                "image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32,
            }),
        };
        json!({
            "model_name": self.model_name(),
            "model_cfg": {
                "embed_dim": 128,
                "quick_gelu": true,
                "vision_cfg": vision,
                "text_cfg": {
                    "context_length": 32, "vocab_size": 49408,
                    "width": 128, "heads": 4, "layers": 4,
                },
            },
            "preprocess_cfg": {
                "mean": CLIP_MEAN, "std": CLIP_STD,
                "interpolation": "bicubic", "resize_mode": "shortest",
            },
        })
    }

    /// The model shape, read back from [`Self::open_clip_config`] by the checkpoint parser.
    pub fn spec(self) -> ClipSpec {
        config::from_open_clip_config(&self.open_clip_config())
            .expect("the demo configurations are valid open_clip configurations")
    }
}

impl fmt::Display for DemoArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vit => "vit",
            Self::Rn => "rn",
        })
    }
}

impl FromStr for DemoArch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vit" => Ok(Self::Vit),
            "rn" => Ok(Self::Rn),
            other => Err(format!("unknown demo architecture '{other}' (vit or rn)")),
        }
    }
}
