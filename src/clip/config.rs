//! Model shapes read from a checkpoint's own configuration file.
//!
//! Nothing about a model's size is hard-coded: every width, depth, patch and resolution comes
//! from `config.json` (Hugging Face) or `open_clip_config.json` (open_clip).

use serde_json::Value;

/// The non-linearity inside the transformer MLPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU, used by most open_clip and LAION models.
    Gelu,
    /// GELU approximated with tanh (`gelu_new`, `gelu_pytorch_tanh` in Hugging Face configs).
    GeluTanh,
    /// x·σ(1.702x), used by the original OpenAI weights.
    QuickGelu,
}

impl Activation {
    /// Maps a Hugging Face `hidden_act` string.
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            _ => None,
        }
    }
}

/// A stack of pre-norm residual attention blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerSpec {
    /// Embedding width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Hidden width of the MLP.
    pub mlp_width: usize,
    /// MLP non-linearity.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

/// A Vision Transformer image tower.
#[derive(Clone, Debug, PartialEq)]
pub struct VitSpec {
    /// Input resolution (square).
    pub image_size: usize,
    /// Patch size of the convolutional stem.
    pub patch_size: usize,
    /// The transformer behind the stem.
    pub transformer: TransformerSpec,
}

impl VitSpec {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// OpenAI's ModifiedResNet image tower.
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetSpec {
    /// Input resolution (square, a multiple of 32).
    pub image_size: usize,
    /// Bottleneck blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Stem width; the final feature width is `width * 32`.
    pub width: usize,
    /// Heads of the attention-pooling head.
    pub heads: usize,
}

impl ResNetSpec {
    /// Channels entering the attention pool.
    pub fn feature_width(&self) -> usize {
        self.width * 32
    }
}

/// The image tower of a CLIP model.
#[derive(Clone, Debug, PartialEq)]
pub enum VisionSpec {
    /// Vision Transformer.
    Vit(VitSpec),
    /// ModifiedResNet.
    ResNet(ResNetSpec),
}

impl VisionSpec {
    /// Input resolution of the tower.
    pub fn image_size(&self) -> usize {
        match self {
            Self::Vit(spec) => spec.image_size,
            Self::ResNet(spec) => spec.image_size,
        }
    }
}

/// Which token's state becomes the text embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextPooling {
    /// The position of the largest token id (the end token has the largest id).
    ArgmaxId,
    /// The first position holding this id.
    FirstId(u32),
}

/// The text tower.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSpec {
    /// Maximum tokens per text, start and end tokens included.
    pub context_length: usize,
    /// Rows of the token embedding.
    pub vocab_size: usize,
    /// The causal transformer.
    pub transformer: TransformerSpec,
    /// How the sequence is reduced to one vector.
    pub pooling: TextPooling,
    /// Id used to pad short texts (0 for open_clip, the end token for Hugging Face).
    pub pad_id: u32,
}

/// Everything needed to build a CLIP model of the right shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSpec {
    /// Width of the joint embedding space.
    pub embed_dim: usize,
    /// Image tower.
    pub vision: VisionSpec,
    /// Text tower.
    pub text: TextSpec,
    /// Per-channel normalisation mean used by preprocessing.
    pub mean: [f32; 3],
    /// Per-channel normalisation standard deviation used by preprocessing.
    pub std: [f32; 3],
}

impl ClipSpec {
    /// Sizes within [`crate::limits`], a usable normalisation, and a model that fits in the
    /// memory available: checked before any tensor exists, so a mistyped config is refused with
    /// its value instead of aborting on allocation.
    pub fn check(&self) -> Result<(), ConfigError> {
        use crate::limits::{MAX_CONTEXT, MAX_IMAGE_SIZE, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH};
        fn within(what: &str, value: usize, max: usize) -> Result<(), ConfigError> {
            if value == 0 || value > max {
                return Err(format!("{what} must be from 1 to {max}, found {value}"));
            }
            Ok(())
        }
        fn transformer(t: &TransformerSpec, tower: &str) -> Result<(), ConfigError> {
            within(&format!("the {tower} width"), t.width, MAX_WIDTH)?;
            within(&format!("the {tower} layer count"), t.layers, MAX_LAYERS)?;
            within(
                &format!("the {tower} MLP width"),
                t.mlp_width,
                4 * MAX_WIDTH,
            )?;
            within(&format!("the {tower} head count"), t.heads, t.width)
        }
        within("the embedding width", self.embed_dim, MAX_WIDTH)?;
        within("the image size", self.vision.image_size(), MAX_IMAGE_SIZE)?;
        match &self.vision {
            VisionSpec::Vit(v) => {
                within("the patch size", v.patch_size, v.image_size)?;
                transformer(&v.transformer, "vision")?;
            }
            VisionSpec::ResNet(r) => {
                within("the ResNet stem width", r.width, MAX_WIDTH / 32)?;
                for layers in r.layers {
                    within("each ResNet stage's block count", layers, MAX_LAYERS)?;
                }
                within("the attention-pool head count", r.heads, r.feature_width())?;
            }
        }
        within("the context length", self.text.context_length, MAX_CONTEXT)?;
        within("the vocabulary size", self.text.vocab_size, MAX_VOCAB)?;
        transformer(&self.text.transformer, "text")?;
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(format!(
                "the normalisation mean must be finite and its std above 0, found mean {:?}, std {:?}",
                self.mean, self.std
            ));
        }
        let bytes = self.parameter_estimate() * 4;
        if let Some(available) = crate::limits::available_memory()
            && bytes > available
        {
            return Err(format!(
                "the config describes about {:.1} GB of weights, more than the {:.1} GB of memory available",
                bytes as f64 / 1e9,
                available as f64 / 1e9
            ));
        }
        Ok(())
    }

    /// About how many parameters the model has (weights of every linear and convolution
    /// layer and embedding; norms and biases left out), to refuse one too big for memory.
    pub fn parameter_estimate(&self) -> u64 {
        let layers = |t: &TransformerSpec| {
            let (w, m) = (t.width as u64, t.mlp_width as u64);
            t.layers as u64 * (4 * w * w + 2 * w * m)
        };
        let embed = self.embed_dim as u64;
        let vision = match &self.vision {
            VisionSpec::Vit(v) => {
                let (w, p, g) = (
                    v.transformer.width as u64,
                    v.patch_size as u64,
                    v.grid() as u64,
                );
                layers(&v.transformer) + 3 * p * p * w + (g * g + 1) * w + w * embed
            }
            VisionSpec::ResNet(r) => {
                // A bottleneck of `planes` channels holds about 17·planes² weights.
                let stages: u64 = (0..4)
                    .map(|s| {
                        let planes = (r.width as u64) << s;
                        r.layers[s] as u64 * 17 * planes * planes
                    })
                    .sum();
                let features = r.feature_width() as u64;
                stages + 4 * features * features + features * embed
            }
        };
        let t = &self.text;
        let w = t.transformer.width as u64;
        vision
            + layers(&t.transformer)
            + (t.vocab_size as u64 + t.context_length as u64) * w
            + w * embed
    }
}

/// CLIP's normalisation constants (OpenAI, also the open_clip and Hugging Face default).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// See [`CLIP_MEAN`].
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The end-of-text token of CLIP's vocabulary.
pub const EOT_ID: u32 = 49407;

/// A problem with a configuration file, described for the user.
pub type ConfigError = String;

fn get_usize(obj: &Value, key: &str) -> Result<Option<usize>, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| format!("'{key}' must be a non-negative integer, found {v}")),
    }
}

fn triple(value: Option<&Value>, default: [f32; 3]) -> Result<[f32; 3], ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let values: Vec<f32> = value
        .as_array()
        .ok_or_else(|| format!("expected a list of 3 numbers, found {value}"))?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("expected a list of 3 numbers, found {value}"))?;
    values
        .try_into()
        .map_err(|_| format!("expected a list of 3 numbers, found {value}"))
}

/// Defaults of transformers' `CLIPTextConfig` / `CLIPVisionConfig`, used for keys a
/// `config.json` leaves out (older files store only the values that differ).
struct HfDefaults {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
}

const HF_TEXT_DEFAULTS: HfDefaults = HfDefaults {
    hidden_size: 512,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 8,
};

const HF_VISION_DEFAULTS: HfDefaults = HfDefaults {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
};

fn hf_transformer(
    section: &Value,
    name: &str,
    defaults: &HfDefaults,
) -> Result<TransformerSpec, ConfigError> {
    let act = section
        .get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("quick_gelu");
    Ok(TransformerSpec {
        width: get_usize(section, "hidden_size")?.unwrap_or(defaults.hidden_size),
        layers: get_usize(section, "num_hidden_layers")?.unwrap_or(defaults.num_hidden_layers),
        heads: get_usize(section, "num_attention_heads")?.unwrap_or(defaults.num_attention_heads),
        mlp_width: get_usize(section, "intermediate_size")?.unwrap_or(defaults.intermediate_size),
        activation: Activation::from_hf(act)
            .ok_or_else(|| format!("'{name}.hidden_act' = '{act}' is not supported"))?,
        layer_norm_eps: section
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5),
    })
}

/// Reads a Hugging Face `CLIPModel` `config.json`.
pub fn from_hf_config(config: &Value) -> Result<ClipSpec, ConfigError> {
    if let Some(kind) = config.get("model_type").and_then(Value::as_str)
        && kind != "clip"
    {
        return Err(format!(
            "'model_type' is '{kind}'; Lethe reads CLIP models ('clip')"
        ));
    }
    let section = |key: &str| match config.get(key) {
        Some(value) if value.is_object() => Ok(value),
        Some(value) => Err(format!(
            "'{key}' must be an object of settings, found {value}"
        )),
        None => Err(format!("'{key}' is missing (is this a CLIPModel config?)")),
    };
    let vision = section("vision_config")?;
    let text = section("text_config")?;
    let eos = get_usize(text, "eos_token_id")?.unwrap_or(EOT_ID as usize) as u32;
    let vision_spec = VitSpec {
        image_size: get_usize(vision, "image_size")?.unwrap_or(224),
        patch_size: get_usize(vision, "patch_size")?.unwrap_or(32),
        transformer: hf_transformer(vision, "vision_config", &HF_VISION_DEFAULTS)?,
    };
    check_vit(&vision_spec)?;
    let text_transformer = hf_transformer(text, "text_config", &HF_TEXT_DEFAULTS)?;
    check_heads(&text_transformer, "text")?;
    Ok(ClipSpec {
        embed_dim: get_usize(config, "projection_dim")?.unwrap_or(512),
        vision: VisionSpec::Vit(vision_spec),
        text: TextSpec {
            context_length: get_usize(text, "max_position_embeddings")?.unwrap_or(77),
            vocab_size: get_usize(text, "vocab_size")?.unwrap_or(49408),
            transformer: text_transformer,
            // Older configs carry eos_token_id = 2, a placeholder; the reference then pools at
            // the largest id, which is the end token.
            pooling: if eos == 2 {
                TextPooling::ArgmaxId
            } else {
                TextPooling::FirstId(eos)
            },
            pad_id: EOT_ID,
        },
        mean: CLIP_MEAN,
        std: CLIP_STD,
    })
}

fn check_vit(spec: &VitSpec) -> Result<(), ConfigError> {
    if spec.patch_size == 0 || !spec.image_size.is_multiple_of(spec.patch_size) {
        return Err(format!(
            "image size {} is not a multiple of the patch size {}",
            spec.image_size, spec.patch_size
        ));
    }
    check_heads(&spec.transformer, "vision")
}

fn check_heads(spec: &TransformerSpec, tower: &str) -> Result<(), ConfigError> {
    if spec.heads == 0 || !spec.width.is_multiple_of(spec.heads) {
        return Err(format!(
            "{tower} width {} is not divisible by its {} heads",
            spec.width, spec.heads
        ));
    }
    Ok(())
}

/// Reads an open_clip `open_clip_config.json` (`{"model_cfg": ..., "preprocess_cfg": ...}`).
pub fn from_open_clip_config(config: &Value) -> Result<ClipSpec, ConfigError> {
    let model = config.get("model_cfg").unwrap_or(config);
    let vision = model
        .get("vision_cfg")
        .ok_or("'model_cfg.vision_cfg' is missing")?;
    let text = model
        .get("text_cfg")
        .ok_or("'model_cfg.text_cfg' is missing")?;
    for (section, cfg, keys) in [
        (
            "vision_cfg",
            vision,
            &[
                "timm_model_name",
                "attentional_pool",
                "ls_init_value",
                "global_average_pool",
            ][..],
        ),
        (
            "text_cfg",
            text,
            &["hf_model_name", "ls_init_value", "embed_cls", "proj_bias"][..],
        ),
    ] {
        for key in keys {
            if let Some(v) = cfg.get(*key)
                && !(v.is_null() || v == &Value::Bool(false))
            {
                return Err(format!("'{section}.{key}' = {v} is not supported by Lethe"));
            }
        }
    }
    if let Some(pool) = text.get("pool_type").and_then(Value::as_str)
        && pool != "argmax"
    {
        return Err(format!(
            "'text_cfg.pool_type' = '{pool}' is not supported (only 'argmax')"
        ));
    }
    let activation = if model
        .get("quick_gelu")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        Activation::QuickGelu
    } else {
        Activation::Gelu
    };
    let image_size = match vision.get("image_size") {
        Some(Value::Array(sides)) => sides.first().and_then(Value::as_u64).unwrap_or(224) as usize,
        _ => get_usize(vision, "image_size")?.unwrap_or(224),
    };
    let vision_width = get_usize(vision, "width")?.unwrap_or(768);
    let head_width = get_usize(vision, "head_width")?.unwrap_or(64);
    let mlp_ratio = vision
        .get("mlp_ratio")
        .and_then(Value::as_f64)
        .unwrap_or(4.0);
    let vision_spec = match vision.get("layers") {
        Some(Value::Array(stages)) => {
            let layers: Vec<usize> = stages
                .iter()
                .map(|v| v.as_u64().map(|n| n as usize))
                .collect::<Option<_>>()
                .ok_or("'vision_cfg.layers' must be integers")?;
            let layers: [usize; 4] = layers
                .try_into()
                .map_err(|_| "'vision_cfg.layers' must list 4 ResNet stages")?;
            if !image_size.is_multiple_of(32) {
                return Err(format!(
                    "ResNet image size {image_size} is not a multiple of 32"
                ));
            }
            VisionSpec::ResNet(ResNetSpec {
                image_size,
                layers,
                width: vision_width,
                heads: vision_width * 32 / head_width.max(1),
            })
        }
        _ => {
            let spec = VitSpec {
                image_size,
                patch_size: get_usize(vision, "patch_size")?.unwrap_or(16),
                transformer: TransformerSpec {
                    width: vision_width,
                    layers: get_usize(vision, "layers")?.unwrap_or(12),
                    heads: vision_width / head_width.max(1),
                    mlp_width: (vision_width as f64 * mlp_ratio) as usize,
                    activation,
                    layer_norm_eps: 1e-5,
                },
            };
            check_vit(&spec)?;
            VisionSpec::Vit(spec)
        }
    };
    let text_width = get_usize(text, "width")?.unwrap_or(512);
    let text_mlp_ratio = text.get("mlp_ratio").and_then(Value::as_f64).unwrap_or(4.0);
    let text_transformer = TransformerSpec {
        width: text_width,
        layers: get_usize(text, "layers")?.unwrap_or(12),
        heads: get_usize(text, "heads")?.unwrap_or(8),
        mlp_width: (text_width as f64 * text_mlp_ratio) as usize,
        activation,
        layer_norm_eps: 1e-5,
    };
    check_heads(&text_transformer, "text")?;
    let preprocess = config.get("preprocess_cfg");
    Ok(ClipSpec {
        embed_dim: get_usize(model, "embed_dim")?.ok_or("'model_cfg.embed_dim' is missing")?,
        vision: vision_spec,
        text: TextSpec {
            context_length: get_usize(text, "context_length")?.unwrap_or(77),
            vocab_size: get_usize(text, "vocab_size")?.unwrap_or(49408),
            transformer: text_transformer,
            pooling: TextPooling::ArgmaxId,
            pad_id: get_usize(text, "pad_id")?.unwrap_or(0) as u32,
        },
        mean: triple(preprocess.and_then(|p| p.get("mean")), CLIP_MEAN)?,
        std: triple(preprocess.and_then(|p| p.get("std")), CLIP_STD)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sparse_hugging_face_configs_take_transformers_defaults() {
        let spec = from_hf_config(&json!({"vision_config": {}, "text_config": {}})).unwrap();
        let VisionSpec::Vit(vit) = &spec.vision else {
            panic!("a CLIPModel is a ViT")
        };
        assert_eq!((vit.image_size, vit.patch_size, vit.grid()), (224, 32, 7));
        assert_eq!(vit.transformer.width, 768);
        assert_eq!(vit.transformer.heads, 12);
        assert_eq!(spec.text.transformer.width, 512);
        assert_eq!(spec.text.transformer.activation, Activation::QuickGelu);
        assert_eq!(spec.text.pooling, TextPooling::FirstId(EOT_ID));
        assert_eq!(spec.embed_dim, 512);
    }

    #[test]
    fn legacy_eos_id_pools_at_the_largest_id() {
        let spec =
            from_hf_config(&json!({"vision_config": {}, "text_config": {"eos_token_id": 2}}))
                .unwrap();
        assert_eq!(spec.text.pooling, TextPooling::ArgmaxId);
    }

    #[test]
    fn open_clip_resnet_heads_follow_open_clip() {
        let spec = from_open_clip_config(&json!({"model_cfg": {
            "embed_dim": 1024,
            "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64},
            "text_cfg": {"width": 512, "heads": 8, "layers": 12}
        }}))
        .unwrap();
        let VisionSpec::ResNet(rn) = &spec.vision else {
            panic!("layers as a list means ResNet")
        };
        assert_eq!((rn.heads, rn.feature_width()), (32, 2048));
        assert_eq!(spec.text.transformer.activation, Activation::Gelu);
        assert_eq!(spec.text.pad_id, 0);
    }

    #[test]
    fn unsupported_settings_are_named() {
        let err = from_open_clip_config(&json!({"model_cfg": {
            "embed_dim": 512,
            "vision_cfg": {"timm_model_name": "eva02"},
            "text_cfg": {}
        }}))
        .unwrap_err();
        assert!(err.contains("vision_cfg.timm_model_name"), "{err}");
        let err = from_hf_config(&json!({"model_type": "siglip"})).unwrap_err();
        assert!(err.contains("siglip"), "{err}");
        let err = from_hf_config(&json!({"vision_config": {"image_size": 225}, "text_config": {}}))
            .unwrap_err();
        assert!(err.contains("225"), "{err}");
    }
}
