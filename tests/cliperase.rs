//! CLIPErase from a recipe: it learns from captioned pictures (and says so when there are
//! none), its forgetting loss falls, it ends on the kept model, a diverging run keeps
//! nothing, and the shipped polysemy recipe forgets the fruit orange but not the colour.

use std::sync::atomic::AtomicBool;

use lethe::backend::DeviceChoice;
use lethe::engine::LoadedModel;
use lethe::eval::zero_shot;
use lethe::recipe::Recipe;
use lethe::unlearn::job::Event;
use lethe::workflow::{Opened, execute};

/// A short CLIPErase run on the demo ViT forgetting the fruit orange: `method` is appended
/// to the `[method]` table and `forget` to the `[forget]` table.
fn recipe(forget: &str, method: &str) -> Recipe {
    let text = format!(
        r#"
seed = 3
[model]
path = "demo:vit"
device = "cpu"
[forget]
dataset = "shapes:fruits?seed=21&n=40"
classes = ["orange"]
{forget}
[method]
name = "cliperase"
batch = 8
{method}
[eval]
datasets = []
relearn_steps = 0
retrieval_per_class = 0
"#
    );
    Recipe::parse(&text).unwrap()
}

const PAIRS: &str = r#"images = "shapes:fruits?seed=22&n=60"
retain = "shapes:shapes?seed=23&n=24""#;

fn run(recipe: Recipe) -> (anyhow::Result<lethe::workflow::Finished>, Vec<Event>) {
    let opened = Opened::open(recipe, String::new()).unwrap();
    let mut events = Vec::new();
    let result = execute(&opened, &AtomicBool::new(false), |e| events.push(e.clone()));
    (result, events)
}

/// The forgetting module's loss at every step.
fn forget_losses(events: &[Event]) -> Vec<f32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step { report, .. } => report
                .losses
                .iter()
                .find(|(name, _)| name == "forget")
                .map(|(_, loss)| *loss),
            Event::Ended(_) => None,
        })
        .collect()
}

#[test]
fn without_captioned_pictures_the_run_is_refused_naming_what_is_missing() {
    let (result, _) = run(recipe("", "epochs = 2"));
    let error = format!("{:#}", result.err().unwrap());
    assert!(
        error.contains("image–caption pairs") && error.contains("[forget] images"),
        "{error}"
    );
    let (result, _) = run(recipe(
        r#"images = "shapes:fruits?seed=22&n=60""#,
        "epochs = 2",
    ));
    let error = format!("{:#}", result.err().unwrap());
    assert!(error.contains("[forget] retain"), "{error}");
}

#[test]
fn the_forget_pictures_move_away_from_their_captions() {
    let (result, events) = run(recipe(PAIRS, "learning_rate = 2e-4\nepochs = 2"));
    let finished = result.unwrap();
    let losses = forget_losses(&events);
    // 60 images hold about 12 oranges: two steps of 8 per epoch, two epochs.
    assert_eq!(losses.len(), 4, "{losses:?}");
    assert!(
        losses[3] < losses[0] - 0.05,
        "similarity of forget pictures to their captions: {losses:?}"
    );
    // Validation after each epoch reports both figures.
    let validated = events
        .iter()
        .filter(|e| {
            matches!(e, Event::Step { report, .. }
                if report.forget_accuracy.is_some() && report.retain_accuracy.is_some())
        })
        .count();
    assert_eq!(validated, 2);
    assert_eq!(finished.metrics.method, "cliperase");
}

#[test]
fn a_diverging_run_writes_nothing_and_says_why() {
    let (result, _) = run(recipe(PAIRS, "learning_rate = 1000000.0\nepochs = 2"));
    let error = format!("{:#}", result.err().unwrap());
    assert!(
        error.contains("stopped being finite") && error.contains("learning_rate (now 1000000.0)"),
        "{error}"
    );
}

#[test]
fn switching_a_module_off_drops_its_loss() {
    let (result, events) = run(recipe(
        PAIRS,
        "learning_rate = 1e-4\nepochs = 1\nconsistency = false",
    ));
    result.unwrap();
    let Some(Event::Step { report, .. }) = events.first() else {
        panic!("{events:?}")
    };
    let names: Vec<&str> = report.losses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["forget", "retain"]);
}

/// CLIPErase's polysemy case from the shipped recipe: the fruit orange goes, the colour orange
/// and the other fruits stay.
#[test]
fn the_fruit_orange_is_forgotten_and_the_colour_orange_kept() {
    let path = format!(
        "{}/recipes/forget-orange-fruit-vit-cliperase.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut recipe = Recipe::parse(&text).unwrap();
    recipe.model.device = "cpu".into();
    recipe.eval.datasets.clear();
    recipe.eval.relearn_steps = 0;
    recipe.eval.retrieval_per_class = 0;
    let (result, _) = run(recipe);
    let finished = result.unwrap();
    let m = &finished.metrics;
    assert!(
        m.target.after.value <= 0.10,
        "the fruit orange: {:?}",
        m.target
    );
    let fruits = &m.datasets[0];
    let (before, after) = (
        fruits.other_classes_before.unwrap().value,
        fruits.other_classes_after.unwrap().value,
    );
    assert!(
        before - after <= 0.03,
        "other fruits {before:.3} -> {after:.3}"
    );
    let colours = lethe::data::dataset::open("shapes:colors?seed=102&n=400").unwrap();
    let accuracy = |model: &lethe::clip::Clip| {
        let loaded = LoadedModel::open_spec("demo:vit", DeviceChoice::Cpu)
            .unwrap()
            .with_model(model.clone());
        zero_shot(&loaded, &colours, &colours.templates, 200).per_class["orange"]
    };
    let original = LoadedModel::open_spec("demo:vit", DeviceChoice::Cpu).unwrap();
    let before = zero_shot(&original, &colours, &colours.templates, 200).per_class["orange"];
    let after = accuracy(&finished.model);
    assert!(
        before - after <= 0.05,
        "the colour orange fell from {before:.3} to {after:.3}"
    );
}
