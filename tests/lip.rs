//! Lip's mechanics: one step changes only the top-ranked layers, on a ResNet only attention-pool
//! layers of the vision tower, and ULip never touches the text tower.

use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::Clip;
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::tokenizer::Tokenizer;
use lethe::clip::weights::Format;
use lethe::curation::{HeldOut, Scenario};
use lethe::demo::resolve_model;
use lethe::unlearn::job::{Method, StepReport};
use lethe::unlearn::methods::emb::EmbLoss;
use lethe::unlearn::methods::lip::{LipFamily, LipLoss, LipOptions, PerturbationLoss};
use lethe::unlearn::methods::ulip::ULipLoss;
use lethe::unlearn::toolkit::RetainImages;

/// The loss of the Lip-family member named `name`.
fn loss(name: &str) -> Box<dyn PerturbationLoss> {
    match name {
        "lip" => Box::new(LipLoss),
        "ulip" => Box::new(ULipLoss),
        _ => Box::new(EmbLoss { alpha: 1.0 }),
    }
}

/// One step of the Lip-family member `method` on `model_spec` with 4 random "images" of the first of three colour
/// classes: the model's report and the open_clip keys of the tensors that changed.
fn one_step(model_spec: &str, method: &str, options: &LipOptions) -> (StepReport, Vec<String>) {
    let device = Device::flex().autodiff();
    let model = Checkpoint::open(&resolve_model(model_spec).unwrap())
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
    let task = Scenario {
        images: Tensor::<4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        labels: vec![0; 4],
        prompts,
        templates: 1,
        retain: None,
        held_out: None,
        forget_pairs: None,
        retain_pairs: None,
        calibration: None,
        subgroup_prompts: None,
    };
    let mut method = LipFamily::new(loss(method), options.clone(), task, 0);
    let before = named_tensors(&model, Format::OpenClip, None);
    let (updated, report) = method.step(model.clone(), &model).unwrap();
    let after = named_tensors(&updated, Format::OpenClip, None);
    let changed = before
        .keys()
        .filter(|k| before[*k] != after[*k])
        .cloned()
        .collect();
    (report, changed)
}

/// The paper's defaults with few perturbations and a small batch, to keep a step cheap.
fn small_step() -> LipOptions {
    LipOptions {
        perturbations: 2,
        batch: 2,
        ..LipOptions::default()
    }
}

#[test]
fn a_lip_step_updates_only_the_top_layers_of_each_tower() {
    let options = small_step();
    let (report, changed) = one_step("demo:rn", "lip", &options);
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

#[test]
fn a_ulip_step_leaves_the_text_tower_alone() {
    let (report, changed) = one_step("demo:vit", "ulip", &small_step());
    assert_eq!(report.losses[0].0, "ulip");
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|k| k.starts_with("visual.")),
        "{changed:?}"
    );
}

#[test]
fn with_blocks_only_the_shared_layers_stay_put() {
    let options = LipOptions {
        blocks_only: true,
        ..small_step()
    };
    let (_, changed) = one_step("demo:vit", "lip", &options);
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|k| k.contains("resblocks.")),
        "{changed:?}"
    );
}

/// The demo ViT on an autodiff CPU device with a two-class head, "red" or "blue": the device,
/// the model, the tokenised prompts and the class embeddings.
fn demo_vit_red_or_blue() -> (Device, Clip, Vec<Vec<u32>>, Tensor<2>) {
    let device = Device::flex().autodiff();
    let model = Checkpoint::open(&resolve_model("demo:vit").unwrap())
        .unwrap()
        .load(&device)
        .unwrap();
    let prompts = Tokenizer::clip_default().tokenize_batch(
        &["a photo of a red shape.", "a photo of a blue shape."],
        32,
        0,
    );
    let heads = lethe::eval::ensemble(model.encode_text(&prompts), 1);
    (device, model, prompts, heads)
}

#[test]
fn the_retain_term_starts_at_zero_and_grows_as_the_model_drifts() {
    let (device, model, prompts, heads) = demo_vit_red_or_blue();
    let kept = Tensor::<4>::random([3, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let task = Scenario {
        images: Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        labels: vec![0; 2],
        prompts,
        templates: 1,
        retain: Some(RetainImages::new(&model, heads, kept)),
        held_out: None,
        forget_pairs: None,
        retain_pairs: None,
        calibration: None,
        subgroup_prompts: None,
    };
    let options = LipOptions {
        learning_rate: 1e-2,
        retain_weight: 1.0,
        ..small_step()
    };
    let mut method = LipFamily::new(loss("emb"), options, task, 0);
    let (model, first) = method.step(model.clone(), &model).unwrap();
    let retain_loss = |report: &StepReport| {
        report
            .losses
            .iter()
            .find(|(name, _)| name == "retain")
            .map(|(_, loss)| *loss)
            .expect("the retain loss is reported")
    };
    // The first step starts from the original model: its answers are the reference.
    assert!(retain_loss(&first).abs() < 1e-5, "{first:?}");
    assert_eq!(first.retain_accuracy, Some(1.0));
    let (_, second) = method.step(model.clone(), &model).unwrap();
    assert!(retain_loss(&second) > 1e-5, "{second:?}");
}

#[test]
fn with_held_out_pictures_the_stop_is_judged_on_them_not_on_the_training_pictures() {
    let (device, model, prompts, heads) = demo_vit_red_or_blue();
    let unseen = Tensor::<4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let scores = lethe::clip::host_values(
        lethe::clip::normalize(model.encode_image(unseen.clone())).matmul(heads.transpose()),
    );
    let answers: Vec<usize> = scores.chunks(2).map(lethe::eval::argmax).collect();
    // Held-out labels that are the model's own answers are all recognised, and labels that
    // are never its answer none; the training pictures (labelled with both classes) do not
    // enter the figure either way.
    for (labels, expected) in [
        (answers.clone(), 1.0),
        (answers.iter().map(|a| 1 - a).collect(), 0.0),
    ] {
        let task = Scenario {
            images: Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
            labels: vec![0, 1],
            prompts: prompts.clone(),
            templates: 1,
            retain: None,
            held_out: Some(HeldOut {
                images: unseen.clone(),
                labels,
            }),
            forget_pairs: None,
            retain_pairs: None,
            calibration: None,
            subgroup_prompts: None,
        };
        let method = LipFamily::new(loss("lip"), small_step(), task, 0);
        assert_eq!(method.forget_accuracy(&model), expected);
    }
}
