//! Attention maps come from the same forward pass as the embeddings (for heatmaps).

mod common;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::checkpoint::Checkpoint;
use lethe::clip::{Inspect, VisionTower, host_values, normalize};
use lethe::viz::saliency::saliency_toward;

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
    // Plain encoding stops at the last end-of-text token (causal attention: nothing after it
    // reaches a pooled output); the maps cover the whole context, and both give one embedding.
    let ids = checkpoint.tokenizer().unwrap().tokenize_batch(
        &["a cat", "a photo of a cat sitting on a red mat"],
        77,
        0,
    );
    let text = model.encode_text_with_attention(&ids);
    assert_eq!(text.attentions.len(), 2, "{name}: one map per text block");
    for map in &text.attentions {
        assert_eq!(map.dims()[2..], [77, 77], "{name}: text map");
    }
    common::assert_close(
        &format!("{name}: text embeddings"),
        &host_values(model.encode_text(&ids)),
        &host_values(text.embeds),
        1e-6,
    );
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

/// A model, a random picture and a text embedding of that model, for saliency toward a text.
fn toward_text(name: &str) -> (lethe::clip::Clip, Tensor<4>, Tensor<2>) {
    let checkpoint = Checkpoint::open(&common::fixtures().join(name)).unwrap();
    let device = Device::flex();
    let model = checkpoint.load(&device).unwrap();
    let size = checkpoint.spec.vision.image_size();
    let pixels = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let ids = checkpoint
        .tokenizer()
        .unwrap()
        .tokenize_batch(&["a photo of a cat"], 77, 0);
    let text = model.encode_text(&ids);
    (model, pixels, text)
}

#[test]
fn probes_for_gradients_leave_the_embeddings_unchanged() {
    for name in ["openclip-vit", "openclip-rn"] {
        let (model, pixels, _) = toward_text(name);
        let trainable = model.train();
        let plain = trainable
            .visual
            .forward(pixels.clone().autodiff(), Inspect::Nothing);
        let probed = trainable
            .visual
            .forward(pixels.autodiff(), Inspect::Gradients);
        assert_eq!(
            host_values(probed.embeds),
            host_values(plain.embeds),
            "{name}"
        );
        let expected = if name.ends_with("vit") { 2 } else { 1 };
        assert_eq!(probed.probes.len(), expected, "{name}");
    }
}

#[test]
fn vit_saliency_toward_a_text_is_the_gradient_weighted_rollout() {
    let (model, pixels, text) = toward_text("openclip-vit");
    let trainable = model.clone().train();
    let output = trainable
        .visual
        .forward(pixels.clone().autodiff(), Inspect::Gradients);
    let similarity = (normalize(output.embeds) * normalize(text.clone().autodiff())).sum();
    let gradients = similarity.backward();
    let device = Device::flex();
    let keys = output.probes[0].value.dims()[3];
    let eye = Tensor::<2>::eye(keys, &device);
    // R ← R + Ā_l·R with Ā_l = mean_heads(max(0, ∂s/∂A_l ⊙ A_l)), from R = I.
    let mut rollout = eye.clone();
    for probe in &output.probes {
        let gradient = probe.zero.grad(&gradients).unwrap();
        let weighted = (gradient * probe.value.clone().inner()).clamp_min(0.0);
        let mean = weighted.mean_dim(1).reshape([keys, keys]);
        rollout = rollout.clone() + mean.matmul(rollout);
    }
    let row = host_values(rollout.slice([0..1, 1..keys]));
    let max = row.iter().copied().fold(f32::MIN, f32::max);
    let expected: Vec<f32> = row.iter().map(|v| v / max).collect();
    let got = saliency_toward(&model, pixels, text).remove(0);
    assert_eq!(got.values.len(), 16);
    common::assert_close("gradient-weighted rollout", &got.values, &expected, 1e-4);
}

#[test]
fn resnet_saliency_toward_a_text_is_grad_cam_on_the_last_stage() {
    let (model, pixels, text) = toward_text("openclip-rn");
    let trainable = model.clone().train();
    let output = trainable
        .visual
        .forward(pixels.clone().autodiff(), Inspect::Gradients);
    let VisionTower::ResNet(tower) = &trainable.visual else {
        panic!("a ResNet fixture");
    };
    // The last stage's output as a leaf, pooled again as the tower does: its gradient is the
    // one Grad-CAM needs, computed without the probe.
    let stage = output.probes[0].value.clone().detach().require_grad();
    let [batch, channels, h, w] = stage.dims();
    let tokens = stage
        .clone()
        .reshape([batch, channels, h * w])
        .swap_dims(1, 2);
    let tokens = Tensor::cat(vec![tokens.clone().mean_dim(1), tokens], 1)
        + tower.pool.positions.val().unsqueeze::<3>();
    let query = tokens.clone().narrow(1, 0, 1);
    let pooled = tower
        .pool
        .attention
        .forward(query, tokens, false, Inspect::Nothing)
        .output;
    let embed = pooled.dims()[2];
    let similarity =
        (normalize(pooled.reshape([batch, embed])) * normalize(text.clone().autodiff())).sum();
    let gradient = stage.grad(&similarity.backward()).unwrap();
    let weights = gradient.mean_dim(3).mean_dim(2);
    let cam = (stage.inner() * weights).sum_dim(1).clamp_min(0.0);
    let cam = host_values(cam);
    let max = cam.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    let expected: Vec<f32> = cam.iter().map(|v| v / max).collect();
    assert!(
        expected.contains(&1.0),
        "a map with a positive cell: {expected:?}"
    );
    let got = saliency_toward(&model, pixels, text).remove(0);
    assert_eq!(got.values.len(), 4);
    common::assert_close("Grad-CAM", &got.values, &expected, 1e-4);
}

/// Every block of `transformer` on every row, then each sequence's row at `read`: what
/// [`Transformer::forward`] computes with its last block on the read rows alone.
fn full_pass_read(
    transformer: &lethe::clip::transformer::Transformer,
    mut x: Tensor<3>,
    causal: bool,
    read: &[usize],
) -> Tensor<2> {
    for block in &transformer.blocks {
        x = block.forward(x, causal, Inspect::Nothing, None).0;
    }
    let rows: Vec<Tensor<2>> = read
        .iter()
        .enumerate()
        .map(|(sequence, &position)| {
            x.clone()
                .narrow(0, sequence, 1)
                .narrow(1, position, 1)
                .flatten(0, 1)
        })
        .collect();
    Tensor::cat(rows, 0)
}

#[test]
fn the_last_block_on_the_read_rows_alone_gives_the_full_pass_values() {
    let checkpoint = Checkpoint::open(&common::fixtures().join("openclip-vit")).unwrap();
    let device = Device::flex();
    let model = checkpoint.load(&device).unwrap();
    let VisionTower::Vit(vit) = &model.visual else {
        panic!("a ViT fixture")
    };
    // Image-like (every sequence read at its first position, no mask) and text-like (causal,
    // each sequence read where its own end-of-text token would be).
    for (transformer, causal, read) in [
        (&vit.transformer, false, vec![0, 0, 0]),
        (&model.text.transformer, true, vec![6, 2, 4]),
    ] {
        let width = transformer.blocks[0].fc2.weight.dims()[1];
        let x = Tensor::<3>::random([3, 7, width], Distribution::Normal(0.0, 1.0), &device);
        let got = transformer.forward(x.clone(), causal, Inspect::Nothing, &read);
        let want = full_pass_read(transformer, x.clone(), causal, &read);
        assert_eq!(host_values(got.read), host_values(want), "causal: {causal}");

        // Under autodiff the gradient reaches the input through the read rows alone, as the
        // full pass's does (the sums differ in order, not in value).
        let trainable = transformer.clone().train();
        let weights = Tensor::<2>::random([3, width], Distribution::Normal(0.0, 1.0), &device);
        let input_gradient = |full: bool| {
            let x = x.clone().autodiff().require_grad();
            let read_rows = if full {
                full_pass_read(&trainable, x.clone(), causal, &read)
            } else {
                trainable
                    .forward(x.clone(), causal, Inspect::Nothing, &read)
                    .read
            };
            let gradients = (read_rows * weights.clone().autodiff()).sum().backward();
            host_values(x.grad(&gradients).unwrap())
        };
        common::assert_close(
            "input gradient",
            &input_gradient(false),
            &input_gradient(true),
            1e-5,
        );
    }
}
