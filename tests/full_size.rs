//! A checkpoint of ViT-B/32's real size (151M parameters) loads and embeds: nothing in the
//! model depends on the tiny fixtures' shapes.

use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::weights::Format;
use lethe::clip::{Clip, config, host_values};
use safetensors::tensor::{Dtype, TensorView};

/// transformers' configuration of `openai/clip-vit-base-patch32`, reduced to the keys it sets.
fn vit_b32_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "clip",
        "projection_dim": 512,
        "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                        "num_hidden_layers": 12, "max_position_embeddings": 77, "eos_token_id": 2},
        "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                          "num_hidden_layers": 12, "image_size": 224, "patch_size": 32}
    })
}

/// Writes a random-weight Hugging Face checkpoint with every key the model expects.
fn write_random_checkpoint(dir: &std::path::Path) {
    let json = vit_b32_config();
    let spec = config::from_hf_config(&json).unwrap();
    let shapes = named_tensors(
        &Clip::new(&spec, &Device::flex()),
        Format::HuggingFace,
        None,
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
    };
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(key, (shape, values))| {
            let bytes = (0..values.len())
                .flat_map(|_| half::f16::from_f32(1.0 + next()).to_le_bytes())
                .collect();
            (key, shape, bytes)
        })
        .collect();
    let views: Vec<(&str, TensorView)> = encoded
        .iter()
        .map(|(k, shape, bytes)| {
            (
                k.as_str(),
                TensorView::new(Dtype::F16, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
}

#[test]
fn a_vit_b32_sized_checkpoint_loads_and_embeds() {
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(dir.path());
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    let device = Device::flex();
    let model = checkpoint.load(&device).unwrap();

    let pixels = Tensor::<4>::random([2, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let images = host_values(model.encode_image(pixels));
    assert_eq!(images.len(), 2 * 512);
    assert!(images.iter().all(|v| v.is_finite()));
    assert_ne!(
        images[..512],
        images[512..],
        "different images gave the same embedding"
    );

    let tokenizer = checkpoint.tokenizer().unwrap();
    let ids = tokenizer.tokenize_batch(&["a photo of a cat", "a diagram"], 77, 49407);
    let texts = host_values(model.encode_text(&ids));
    assert_eq!(texts.len(), 2 * 512);
    assert!(texts.iter().all(|v| v.is_finite()));
    assert_ne!(texts[..512], texts[512..]);
}
