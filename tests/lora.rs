//! Low-rank adapters: they train alone, merge into the weights, and the merged model saves
//! in its source format with its source keys, shapes and dtypes.

mod common;

use std::collections::HashSet;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::lora::{LoraShape, adapters, attach, merge, write_adapters};
use lethe::clip::weights::Format;
use lethe::clip::{Clip, host_values, normalize};
use lethe::unlearn::params::layers;

use common::{assert_close, fixtures, read_tensors};

/// Layers to adapt in each fixture: matrices and kernels of both towers, one part of a fused
/// attention projection included.
fn chosen_keys(name: &str) -> Vec<&'static str> {
    let mut keys = vec![
        "visual.conv1.weight",
        "transformer.resblocks.0.mlp.c_fc.weight",
        "transformer.resblocks.0.attn.in_proj_weight#v",
    ];
    keys.push(if name.contains("rn") {
        "visual.attnpool.c_proj.weight"
    } else {
        "visual.transformer.resblocks.0.attn.in_proj_weight#q"
    });
    keys
}

fn pixels(size: usize, device: &Device) -> Tensor<4> {
    Tensor::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), device)
}

const CAPTIONS: [[u32; 4]; 2] = [[49406, 320, 1125, 49407], [49406, 320, 4990, 49407]];

fn captions() -> Vec<Vec<u32>> {
    CAPTIONS.iter().map(|c| c.to_vec()).collect()
}

fn embeddings(model: &Clip, images: Tensor<4>) -> (Vec<f32>, Vec<f32>) {
    let model = model.valid();
    (
        host_values(model.encode_image(images.inner())),
        host_values(model.encode_text(&captions())),
    )
}

/// A few Adam steps that pull each image towards the other caption: enough to move every
/// adapter away from zero.
fn train(mut model: Clip, images: Tensor<4>) -> (Clip, usize) {
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut trained = 0;
    for _ in 0..3 {
        let image = normalize(model.encode_image(images.clone()));
        let text = normalize(model.encode_text(&captions()));
        let loss = (image * text.flip([0])).sum().neg();
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        trained = gradients.len();
        model = optimizer.step(1e-2, model, gradients);
    }
    (model, trained)
}

#[test]
fn adapters_train_alone_and_merge_into_the_source_checkpoint() {
    let device = Device::flex().autodiff();
    for name in ["openclip-vit", "openclip-rn", "hf-vit"] {
        let input = fixtures().join(name);
        let checkpoint = Checkpoint::open(&input).unwrap();
        let original = checkpoint.load(&device).unwrap();
        let size = checkpoint.spec.vision.image_size();
        let images = pixels(size, &device);
        let keys = chosen_keys(name);
        let chosen: HashSet<_> = layers(&original)
            .into_iter()
            .filter(|l| keys.contains(&l.key.as_str()))
            .map(|l| l.id)
            .collect();
        assert_eq!(chosen.len(), keys.len(), "{name}: a chosen key is missing");

        let adapted = attach(
            original.clone(),
            &chosen,
            LoraShape {
                rank: 4,
                alpha: 8.0,
            },
            7,
        );
        // W + 0 is W, though the sum may reach a different matrix kernel (last-bit rounding).
        let (image_before, text_before) = embeddings(&original, images.clone());
        let (image_attached, text_attached) = embeddings(&adapted, images.clone());
        assert_close(
            &format!("{name} attached images"),
            &image_attached,
            &image_before,
            1e-6,
        );
        assert_close(
            &format!("{name} attached texts"),
            &text_attached,
            &text_before,
            1e-6,
        );
        let (adapted, trained) = train(adapted, images.clone());
        assert_eq!(
            trained,
            2 * keys.len(),
            "{name}: only the two factors of each adapter may train"
        );
        let found = adapters(&adapted, Format::OpenClip);
        assert_eq!(
            found.keys().map(String::as_str).collect::<HashSet<_>>(),
            keys.iter().copied().collect::<HashSet<_>>(),
            "{name}"
        );

        // Only the adapted weights differ from the original.
        let before = named_tensors(&original, checkpoint.format, None);
        let merged = merge(adapted.clone());
        let after = named_tensors(&merged, checkpoint.format, None);
        let changed: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
        let stored: HashSet<&str> = keys.iter().map(|k| k.split('#').next().unwrap()).collect();
        if checkpoint.format == Format::OpenClip {
            assert_eq!(
                changed.iter().map(|k| k.as_str()).collect::<HashSet<_>>(),
                stored,
                "{name}: weights other than the adapted ones changed"
            );
        } else {
            assert_eq!(changed.len(), stored.len(), "{name}: {changed:?}");
        }
        let (image_adapted, text_adapted) = embeddings(&adapted, images.clone());
        let (image_merged, text_merged) = embeddings(&merged, images.clone());
        assert_close(
            &format!("{name} merged images"),
            &image_merged,
            &image_adapted,
            1e-5,
        );
        assert_close(
            &format!("{name} merged texts"),
            &text_merged,
            &text_adapted,
            1e-5,
        );
        assert!(
            common::relative_error(&image_merged, &image_before) > 1e-3,
            "{name}: training left the adapters at zero"
        );

        // The merged export keeps the input's files, keys, shapes and dtypes.
        let out = tempfile::tempdir().unwrap();
        checkpoint.export(&merged, out.path()).unwrap();
        let again = Checkpoint::open(out.path()).unwrap();
        assert_eq!(again.format, checkpoint.format, "{name}");
        assert_eq!(
            again.weights.tensors.keys().collect::<Vec<_>>(),
            checkpoint.weights.tensors.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (key, stored) in &checkpoint.weights.tensors {
            let written = &again.weights.tensors[key];
            assert_eq!(
                (written.dtype, &written.shape),
                (stored.dtype, &stored.shape),
                "{name}: {key}"
            );
        }
        let reloaded = again.load(&device).unwrap();
        let (image_reloaded, text_reloaded) = embeddings(&reloaded, images.clone());
        // f16 weights are rounded on the way to disk; f32 ones come back as they were.
        let tolerance = if name == "hf-vit" { 5e-3 } else { 1e-5 };
        assert_close(
            &format!("{name} reopened images"),
            &image_reloaded,
            &image_adapted,
            tolerance,
        );
        assert_close(
            &format!("{name} reopened texts"),
            &text_reloaded,
            &text_adapted,
            tolerance,
        );

        // The adapters saved alone rebuild the change of every weight, in PyTorch's layout.
        let file = out.path().join("adapters.safetensors");
        write_adapters(&found, &file).unwrap();
        let saved = read_tensors(&file);
        for key in [
            "visual.conv1.weight",
            "transformer.resblocks.0.mlp.c_fc.weight",
        ] {
            let (a_shape, a) = &saved[&format!("{key}.lora_A")];
            let (b_shape, b) = &saved[&format!("{key}.lora_B")];
            let scale = found[key].scale as f32;
            let (rank, columns) = (a_shape[0], a_shape[1]);
            assert_eq!(b_shape[1], rank, "{name}: {key}");
            let delta: Vec<f32> = (0..b_shape[0] * columns)
                .map(|i| {
                    let (row, column) = (i / columns, i % columns);
                    scale
                        * (0..rank)
                            .map(|r| b[row * rank + r] * a[r * columns + column])
                            .sum::<f32>()
                })
                .collect();
            let open_clip_before = named_tensors(&original, Format::OpenClip, None);
            let open_clip_after = named_tensors(&merged, Format::OpenClip, None);
            let change: Vec<f32> = open_clip_after[key]
                .1
                .iter()
                .zip(&open_clip_before[key].1)
                .map(|(after, before)| after - before)
                .collect();
            assert_close(&format!("{name} {key} B·A"), &delta, &change, 1e-4);
        }
    }
}
