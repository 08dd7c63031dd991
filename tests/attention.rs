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

/// The saliency a model's maps give, checked against the same quantity computed directly with
/// tensor operations: the rollout Π(½·mean_heads(A_l) + ½·I) for a ViT, the pooled query's
/// head-averaged attention over positions for a ResNet.
fn direct_saliency(name: &str) -> (Vec<f32>, Vec<f32>) {
    let checkpoint = Checkpoint::open(&common::fixtures().join(name)).unwrap();
    let device = Device::flex();
    let model = checkpoint.load(&device).unwrap();
    let size = checkpoint.spec.vision.image_size();
    let pixels = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let maps = model.encode_image_with_attention(pixels.clone()).attentions;
    let [_, _, queries, keys] = maps[0].dims();
    let row = if queries == 1 {
        maps[0]
            .clone()
            .mean_dim(1)
            .reshape([1, keys])
            .slice([0..1, 1..keys])
    } else {
        let eye = Tensor::<2>::eye(keys, &device);
        let mut rollout = eye.clone();
        for map in maps {
            let mean = map.mean_dim(1).reshape([keys, keys]);
            rollout = (mean * 0.5 + eye.clone() * 0.5).matmul(rollout);
        }
        rollout.slice([0..1, 1..keys])
    };
    let row = host_values(row);
    let max = row.iter().copied().fold(f32::MIN, f32::max);
    let expected = row.iter().map(|v| v / max).collect();
    let got = lethe::viz::saliency::saliency(&model, pixels).remove(0);
    assert_eq!(got.side * got.side, got.values.len(), "{name}");
    (got.values, expected)
}

#[test]
fn vit_saliency_is_the_attention_rollout() {
    let (got, expected) = direct_saliency("openclip-vit");
    assert_eq!(got.len(), 16);
    common::assert_close("rollout", &got, &expected, 1e-5);
}

#[test]
fn resnet_saliency_is_the_attention_pool_map() {
    let (got, expected) = direct_saliency("openclip-rn");
    assert_eq!(got.len(), 4);
    common::assert_close("attention pool", &got, &expected, 1e-5);
}
