//! Training the demo models: the objective goes down and runs are reproducible.

use burn::tensor::Device;
use lethe::clip::checkpoint::{Checkpoint, named_tensors, write_open_clip};
use lethe::clip::weights::Format;
use lethe::train::arch::DemoArch;
use lethe::train::trainer::{TrainOptions, Trainer};

fn small(arch: DemoArch) -> TrainOptions {
    TrainOptions {
        steps: 20,
        batch: 12,
        warmup: 1,
        learning_rate: 1e-4,
        ..TrainOptions::new(arch)
    }
}

fn step_lowers_loss(arch: DemoArch) {
    let mut trainer = Trainer::new(small(arch), &Device::flex());
    let before = trainer.evaluate(0);
    let report = trainer.step();
    let after = trainer.evaluate(0);
    assert!(
        (report.loss - before).abs() < 1e-4,
        "{} vs {before}",
        report.loss
    );
    assert!(after < before - 1e-3, "{arch}: loss {before} -> {after}");
}

#[test]
fn a_training_step_lowers_the_vit_loss() {
    step_lowers_loss(DemoArch::Vit);
}

#[test]
fn a_training_step_lowers_the_resnet_loss() {
    step_lowers_loss(DemoArch::Rn);
}

#[test]
fn training_is_reproducible_from_the_seed() {
    let run = |seed| {
        let mut trainer = Trainer::new(
            TrainOptions {
                seed,
                ..small(DemoArch::Rn)
            },
            &Device::flex(),
        );
        trainer.step();
        trainer.step();
        named_tensors(&trainer.model(), Format::OpenClip, None)
    };
    let (a, b, c) = (run(3), run(3), run(4));
    assert_eq!(a, b, "same seed, different weights");
    assert_ne!(a, c, "different seeds gave the same weights");
}

#[test]
fn a_trained_model_saves_as_an_open_clip_checkpoint_and_loads_back() {
    let mut trainer = Trainer::new(small(DemoArch::Rn), &Device::flex());
    trainer.step();
    let dir = tempfile::tempdir().unwrap();
    let model = trainer.model();
    let config = DemoArch::Rn.open_clip_config();
    write_open_clip(&model, &config, safetensors::Dtype::F32, dir.path()).unwrap();
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(checkpoint.format, Format::OpenClip);
    let loaded = checkpoint.load(&Device::flex()).unwrap();
    let saved = named_tensors(&model, Format::OpenClip, None);
    assert_eq!(named_tensors(&loaded, Format::OpenClip, None), saved);
    let running_var = saved
        .iter()
        .find(|(key, _)| key.ends_with("bn1.running_var"))
        .map(|(_, (_, values))| values.clone())
        .unwrap();
    assert!(
        running_var.iter().any(|v| (v - 1.0).abs() > 1e-6),
        "a training step must move the batch-norm running statistics"
    );
}
