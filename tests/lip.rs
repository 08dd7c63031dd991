//! Lip's mechanics on the demo ResNet: one step changes only the top-ranked layers, and on a
//! ResNet only attention-pool layers of the vision tower.

use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::tokenizer::Tokenizer;
use lethe::clip::weights::Format;
use lethe::demo::resolve_model;
use lethe::unlearn::job::Method;
use lethe::unlearn::lip::{ForgetTask, Lip, LipOptions, Variant};

#[test]
fn a_lip_step_updates_only_the_top_layers_of_each_tower() {
    let device = Device::flex().autodiff();
    let model = Checkpoint::open(&resolve_model("demo:rn").unwrap())
        .unwrap()
        .load(&device)
        .unwrap();
    let prompts = Tokenizer::clip_default().tokenize_batch(
        &[
            "a photo of a red shape.",
            "a photo of a blue shape.",
            "a photo of a green shape.",
        ],
        32,
        0,
    );
    let task = ForgetTask {
        images: Tensor::<4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        labels: vec![0; 4],
        prompts,
        templates: 1,
    };
    let options = LipOptions {
        perturbations: 3,
        batch: 2,
        ..LipOptions::default()
    };
    let mut lip = Lip::new(Variant::Lip, options.clone(), task, 0);
    let before = named_tensors(&model, Format::OpenClip, None);
    let (updated, report) = lip.step(model.clone(), &model).unwrap();
    let after = named_tensors(&updated, Format::OpenClip, None);
    let changed: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    let vision: Vec<_> = changed
        .iter()
        .filter(|k| k.starts_with("visual."))
        .collect();
    let text = changed.len() - vision.len();
    assert!(
        report.losses[0].1.is_finite() && report.losses[0].1 > 0.0,
        "{report:?}"
    );
    assert!(
        !vision.is_empty() && vision.len() <= options.vision_layers.0,
        "{vision:?}"
    );
    assert!(
        vision.iter().all(|k| k.starts_with("visual.attnpool.")),
        "{vision:?}"
    );
    assert!(text > 0 && text <= options.text_layers.0, "{changed:?}");
    assert!(report.forget_accuracy.is_some());
}
