//! Parity with the reference implementations (transformers, open_clip) on committed
//! random-weight checkpoints: preprocessing, tokens, embeddings, logits and gradients.

mod common;

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use lethe::backend;
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::host_values;
use lethe::clip::preprocess::Preprocessor;
use serde_json::Value;

use common::{Named, assert_close, fixtures, read_tensors};

const EMBED_TOLERANCE: f32 = 1e-4;
const GRAD_TOLERANCE: f32 = 1e-3;

struct Fixture {
    checkpoint: Checkpoint,
    reference: Named,
    meta: Value,
    dir: PathBuf,
}

fn fixture(name: &str) -> Fixture {
    let dir = fixtures().join(name);
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    Fixture {
        checkpoint: Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{e}")),
        reference: read_tensors(&dir.join("reference.safetensors")),
        meta,
        dir,
    }
}

impl Fixture {
    fn tensor(&self, key: &str) -> &(Vec<usize>, Vec<f32>) {
        self.reference
            .get(key)
            .unwrap_or_else(|| panic!("reference lacks {key}"))
    }

    fn pixels(&self, device: &Device) -> Tensor<4> {
        let (shape, values) = self.tensor("pixel_values");
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
    }

    fn texts(&self) -> Vec<String> {
        serde_json::from_value(self.meta["texts"].clone()).unwrap()
    }

    fn ids(&self) -> Vec<Vec<u32>> {
        serde_json::from_value(self.meta["input_ids"].clone()).unwrap()
    }
}

fn check_forward(name: &str, device: &Device) {
    let f = fixture(name);
    let model = f.checkpoint.load(device).unwrap();
    let tokenizer = f.checkpoint.tokenizer().unwrap();
    let spec = &f.checkpoint.spec;
    let texts = f.texts();
    let ids = tokenizer.tokenize_batch(&texts, spec.text.context_length, spec.text.pad_id);
    assert_eq!(ids, f.ids(), "{name}: token ids differ from the reference");

    let image = model.encode_image(f.pixels(device));
    assert_close(
        &format!("{name} image_embeds"),
        &host_values(image.clone()),
        &f.tensor("image_embeds").1,
        EMBED_TOLERANCE,
    );
    let text = model.encode_text(&ids);
    assert_close(
        &format!("{name} text_embeds"),
        &host_values(text.clone()),
        &f.tensor("text_embeds").1,
        EMBED_TOLERANCE,
    );
    let logits = model.logits(image, text);
    assert_close(
        &format!("{name} logits"),
        &host_values(logits),
        &f.tensor("logits_per_image").1,
        EMBED_TOLERANCE,
    );

    let pre = Preprocessor {
        size: spec.vision.image_size(),
        mean: spec.mean,
        std: spec.std,
    };
    let files: Vec<PathBuf> = serde_json::from_value::<Vec<String>>(f.meta["image_files"].clone())
        .unwrap()
        .iter()
        .map(|p| f.dir.join(p))
        .collect();
    let pixels = pre.batch(&files, device).unwrap();
    assert_close(
        &format!("{name} pixels"),
        &host_values(pixels),
        &f.tensor("pixel_values").1,
        1e-5,
    );
}

fn check_gradients(name: &str, device: &Device) {
    let f = fixture(name);
    let device = device.clone().autodiff();
    let model = f.checkpoint.load(&device).unwrap();
    let pixels = f.pixels(&device).require_grad();
    let image = model.encode_image(pixels.clone());
    let text = model.encode_text(&f.ids());
    let weights: Vec<Vec<f32>> = serde_json::from_value(f.meta["loss_weights"].clone()).unwrap();
    let [rows, cols] = [weights.len(), weights[0].len()];
    let weights = Tensor::<2>::from_data(TensorData::new(weights.concat(), [rows, cols]), &device);
    let loss = (model.logits(image, text) * weights).sum();
    let grads = loss.backward();
    assert_close(
        &format!("{name} grad pixels"),
        &host_values(pixels.grad(&grads).expect("pixel gradient")),
        &f.tensor("grad_pixel_values").1,
        GRAD_TOLERANCE,
    );
    let ours = named_tensors(&model, f.checkpoint.format, Some(&grads));
    let mut checked = 0;
    for (key, (shape, want)) in &f.reference {
        let Some(param) = key.strip_prefix("grad.") else {
            continue;
        };
        if let Some(param) = param.strip_suffix(".rows") {
            let (_, got) = &ours[param];
            let width = shape[1];
            let row_ids = &f.tensor(&format!("grad.{param}.row_ids")).1;
            let got_rows: Vec<f32> = row_ids
                .iter()
                .flat_map(|&r| got[r as usize * width..(r as usize + 1) * width].to_vec())
                .collect();
            assert_close(
                &format!("{name} grad {param} (used rows)"),
                &got_rows,
                want,
                GRAD_TOLERANCE,
            );
            checked += 1;
        } else if !param.ends_with(".row_ids") {
            let (got_shape, got) = ours
                .get(param)
                .unwrap_or_else(|| panic!("{name}: no gradient for {param}"));
            assert_eq!(got_shape, shape, "{name}: gradient shape of {param}");
            assert_close(&format!("{name} grad {param}"), got, want, GRAD_TOLERANCE);
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "{name}: only {checked} parameter gradients compared"
    );
}

fn gpu() -> Option<Device> {
    match backend::resolve(backend::DeviceChoice::Gpu) {
        Ok(resolved) => Some(resolved.device),
        Err(reason) => {
            eprintln!("skipping the wgpu half: {reason}");
            None
        }
    }
}

macro_rules! parity {
    ($module:ident, $name:literal) => {
        mod $module {
            use super::*;

            #[test]
            fn forward_cpu() {
                check_forward($name, &Device::flex());
            }

            #[test]
            fn gradients_cpu() {
                check_gradients($name, &Device::flex());
            }

            #[test]
            fn forward_wgpu() {
                if let Some(device) = gpu() {
                    check_forward($name, &device);
                }
            }

            #[test]
            fn gradients_wgpu() {
                if let Some(device) = gpu() {
                    check_gradients($name, &device);
                }
            }
        }
    };
}

parity!(hf_vit, "hf-vit");
parity!(hf_vit_gelu, "hf-vit-gelu");
parity!(openclip_vit, "openclip-vit");
parity!(openclip_rn, "openclip-rn");
