//! Training the demo models in stages: each stage's objective goes down, each trains only what
//! it should, the run saves and resumes its stages, and runs are reproducible from the seed.

use std::path::Path;

use burn::tensor::Device;
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::weights::Format;
use lethe::data::shapes::{Color, Fruit, Object, Shape};
use lethe::train::arch::DemoArch;
use lethe::train::attributes::{AttributeTrainer, attribute_labels};
use lethe::train::contrastive::ContrastiveTrainer;
use lethe::train::init::initialize;
use lethe::train::lit::LitTrainer;
use lethe::train::pipeline::{Event, Stage, TrainPlan, TrainRun};
use lethe::train::{StageOptions, StageStart, StageTrainer};

type Tensors = Vec<(String, (Vec<usize>, Vec<f32>))>;

fn small_stage() -> StageOptions {
    StageOptions {
        steps: 20,
        batch: 8,
        learning_rate: 1e-3,
        warmup: 1,
        weight_decay: 0.0,
    }
}

/// The start of a short stage of `arch`.
fn start(arch: &lethe::clip::config::ClipSpec) -> StageStart<'_> {
    StageStart {
        spec: arch,
        options: small_stage(),
        seed: 0,
        step: 0,
    }
}

/// A freshly initialised model on the autodiff CPU device.
fn fresh(arch: DemoArch) -> lethe::clip::Clip {
    let device = Device::flex().autodiff();
    let mut model = lethe::clip::Clip::new(&arch.spec(), &device);
    initialize(&mut model, 5, &device);
    model
}

fn tensors(model: &lethe::clip::Clip) -> Tensors {
    named_tensors(model, Format::OpenClip, None)
        .into_iter()
        .collect()
}

/// The tensors whose key starts (or does not start) with `visual.`.
fn tower(all: &Tensors, vision: bool) -> Tensors {
    all.iter()
        .filter(|(key, _)| key.starts_with("visual.") == vision)
        .cloned()
        .collect()
}

/// Takes the first step of a fresh `trainer` and checks that it lowered the loss on its batch.
fn lowers_its_loss(trainer: &mut dyn StageTrainer, what: &str) {
    let before = trainer.evaluate(0);
    let report = trainer.step();
    let after = trainer.evaluate(0);
    assert!(
        (report.loss - before).abs() < 1e-4,
        "{what}: the step saw loss {} where evaluate gave {before}",
        report.loss
    );
    assert!(after < before - 1e-3, "{what}: loss {before} -> {after}");
}

#[test]
fn attribute_labels_follow_the_scene() {
    let mut scene = lethe::data::shapes::sample(1, 0, &Default::default());
    scene.object = Object::Shape {
        shape: Shape::Star,
        color: Color::Red,
    };
    let star = attribute_labels(&scene);
    scene.object = Object::Fruit(Fruit::ALL[1]);
    let fruit = attribute_labels(&scene);
    assert_eq!(
        star[0],
        Shape::ALL.iter().position(|s| *s == Shape::Star).unwrap()
    );
    assert_eq!(
        star[1],
        Color::ALL.iter().position(|c| *c == Color::Red).unwrap()
    );
    assert_eq!(fruit[0], Shape::ALL.len() + 1, "fruits follow the shapes");
    let fruit_colour = Fruit::ALL[1].color();
    assert_eq!(Color::ALL[fruit[1]], fruit_colour);
}

#[test]
fn an_attribute_step_lowers_the_vit_loss() {
    let arch = DemoArch::Vit;
    lowers_its_loss(
        &mut AttributeTrainer::new(fresh(arch), start(&arch.spec())),
        "vit attributes",
    );
}

#[test]
fn an_attribute_step_lowers_the_resnet_loss_and_moves_its_running_statistics() {
    let arch = DemoArch::Rn;
    let model = fresh(arch);
    let before = tensors(&model);
    let mut trainer = AttributeTrainer::new(model, start(&arch.spec()));
    lowers_its_loss(&mut trainer, "rn attributes");
    let after = tensors(&trainer.model());
    let moved = |suffix: &str| {
        before
            .iter()
            .zip(&after)
            .any(|((key, (_, a)), (_, (_, b)))| key.ends_with(suffix) && a != b)
    };
    assert!(moved("running_var"), "batch-norm statistics did not move");
    assert_eq!(
        tower(&before, false),
        tower(&after, false),
        "the text tower changed"
    );
}

#[test]
fn a_lit_step_trains_the_text_tower_against_a_frozen_image_tower() {
    let arch = DemoArch::Vit;
    let model = fresh(arch);
    let before = tensors(&model);
    let mut trainer = LitTrainer::new(model, start(&arch.spec()), 32);
    let scale =
        |trainer: &LitTrainer| lethe::clip::host_values(trainer.model().logit_scale.val())[0];
    lowers_its_loss(&mut trainer, "lit");
    let first = scale(&trainer);
    trainer.step();
    assert_ne!(
        scale(&trainer),
        first,
        "the logit scale stopped training after one step"
    );
    let after = tensors(&trainer.model());
    assert_eq!(
        tower(&before, true),
        tower(&after, true),
        "LiT changed the image tower"
    );
    assert_ne!(
        tower(&before, false),
        tower(&after, false),
        "LiT left the text tower alone"
    );
}

#[test]
fn the_joint_stage_trains_both_towers_but_keeps_the_resnet_statistics() {
    let arch = DemoArch::Rn;
    let model = fresh(arch);
    let before = tensors(&model);
    // The joint stage is a low-learning-rate polish (its default is 2e-5).
    let spec = arch.spec();
    let mut polish = start(&spec);
    polish.options.learning_rate = 2e-5;
    let mut trainer = ContrastiveTrainer::new(model, polish);
    lowers_its_loss(&mut trainer, "joint");
    let after = tensors(&trainer.model());
    for ((key, (_, a)), (_, (_, b))) in before.iter().zip(&after) {
        if key.contains("running_") {
            assert_eq!(a, b, "{key} changed");
        }
    }
    assert_ne!(
        tower(&before, true),
        tower(&after, true),
        "the image tower did not train"
    );
}

/// A plan of a few steps per stage.
fn tiny_plan(seed: u64) -> TrainPlan {
    let mut plan = TrainPlan::new(DemoArch::Rn);
    plan.seed = seed;
    for (stage, steps) in [(Stage::Attributes, 3), (Stage::Lit, 2), (Stage::Joint, 0)] {
        *plan.options_mut(stage) = StageOptions {
            steps,
            batch: 4,
            ..small_stage()
        };
    }
    plan.lit_pool = 8;
    plan
}

/// Runs `plan` into `out`, returning the events (as text) and the final weights.
fn run(plan: &TrainPlan, out: &Path) -> (Vec<String>, Tensors) {
    let mut events = Vec::new();
    TrainRun {
        plan,
        init: None,
        out,
        save_every: 2,
        dtype: safetensors::Dtype::F32,
        device: &Device::flex(),
    }
    .run(&mut |event| {
        events.push(match event {
            Event::Started {
                stage, from_step, ..
            } => format!("start {} {from_step}", stage.name()),
            Event::Reused { stage } => format!("reuse {}", stage.name()),
            Event::Step { stage, report } => format!("step {} {}", stage.name(), report.step),
            Event::Finished { stage } => format!("end {}", stage.name()),
        })
    })
    .unwrap();
    let saved = Checkpoint::open(out)
        .unwrap()
        .load(&Device::flex())
        .unwrap();
    (events, tensors(&saved))
}

#[test]
fn a_staged_run_saves_every_stage_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let plan = tiny_plan(1);
    let (events, weights) = run(&plan, &out);
    assert_eq!(
        events,
        [
            "start attributes 0",
            "step attributes 1",
            "step attributes 2",
            "step attributes 3",
            "end attributes",
            "start lit 0",
            "step lit 1",
            "step lit 2",
            "end lit",
        ]
    );
    for stage in ["1-attributes", "2-lit"] {
        let folder = out.join("stages").join(stage);
        assert!(folder.join("progress.json").is_file(), "{stage} not saved");
        Checkpoint::open(&folder).unwrap();
    }
    assert!(
        !out.join("stages").join("3-joint").exists(),
        "a 0-step stage ran"
    );
    // Tokens no caption used are zeroed in the final model, the others are not.
    let embedding = &weights
        .iter()
        .find(|(key, _)| key == "token_embedding.weight")
        .unwrap()
        .1;
    let width = embedding.0[1];
    let zero_rows = embedding
        .1
        .chunks(width)
        .filter(|row| row.iter().all(|v| *v == 0.0))
        .count();
    assert!(
        zero_rows > 49_000 && zero_rows < embedding.0[0],
        "{zero_rows} zero rows"
    );

    let (again, same) = run(&plan, &out);
    assert_eq!(again, ["reuse attributes", "reuse lit"]);
    assert_eq!(same, weights, "reusing finished stages changed the model");

    // An interrupted LiT stage (its last save at step 1) continues from there.
    let progress = out.join("stages/2-lit/progress.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    state["steps_done"] = 1.into();
    std::fs::write(&progress, serde_json::to_vec(&state).unwrap()).unwrap();
    let (resumed, _) = run(&plan, &out);
    assert_eq!(
        resumed,
        ["reuse attributes", "start lit 1", "step lit 2", "end lit"]
    );

    // Changing the LiT settings trains LiT again but keeps the attribute stage.
    let mut changed = plan.clone();
    changed.lit.learning_rate *= 2.0;
    let (retrained, _) = run(&changed, &out);
    assert_eq!(retrained[..2], ["reuse attributes", "start lit 0"]);
}

#[test]
fn staged_training_is_reproducible_from_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = tiny_plan(3);
    plan.lit.steps = 0;
    let (_, a) = run(&plan, &dir.path().join("a"));
    let (_, b) = run(&plan, &dir.path().join("b"));
    plan.seed = 4;
    let (_, c) = run(&plan, &dir.path().join("c"));
    assert_eq!(a, b, "same seed, different weights");
    assert_ne!(a, c, "different seeds gave the same weights");
}
