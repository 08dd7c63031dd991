//! Attention maps come from the same forward pass as the embeddings (for heatmaps).

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::checkpoint::Checkpoint;
use lethe::clip::host_values;

fn check(name: &str, expected_maps: usize, heads: usize, tokens: [usize; 2]) {
    let checkpoint = Checkpoint::open(&common::fixtures().join(name)).unwrap();
    let device = Device::flex();
    let model = checkpoint.load(&device).unwrap();
    let size = checkpoint.spec.vision.image_size();
    let pixels = Tensor::<4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let plain = host_values(model.encode_image(pixels.clone()));
    let with_maps = model.encode_image_with_attention(pixels);
    assert_eq!(
        host_values(with_maps.embeds),
        plain,
        "{name}: embeddings differ"
    );
    assert_eq!(with_maps.attentions.len(), expected_maps, "{name}");
    for map in with_maps.attentions {
        assert_eq!(map.dims(), [2, heads, tokens[0], tokens[1]], "{name}");
        for row_sum in host_values(map.sum_dim(3)) {
            assert!(
                (row_sum - 1.0).abs() < 1e-5,
                "{name}: attention row sums to {row_sum}"
            );
        }
    }
    let ids = checkpoint
        .tokenizer()
        .unwrap()
        .tokenize_batch(&["a cat"], 77, 0);
    let text = model.encode_text_with_attention(&ids);
    assert_eq!(text.attentions.len(), 2, "{name}: one map per text block");
}

#[test]
fn vit_returns_one_map_per_block() {
    check("openclip-vit", 2, 4, [17, 17]);
}

#[test]
fn resnet_returns_the_attention_pool_map() {
    check("openclip-rn", 1, 16, [1, 5]);
}
