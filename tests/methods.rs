//! Every registered method from a recipe: a tiny run finishes and changes the model, and a
//! run cancelled after its first step or blown up by a huge learning rate keeps nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;
use lethe::clip::checkpoint::named_tensors;
use lethe::clip::weights::Format;
use lethe::recipe::Recipe;
use lethe::unlearn::job::Event;
use lethe::unlearn::methods::{REGISTRY, UnlearningMethod, known_settings};
use lethe::workflow::{Opened, RunStopped, execute};

/// Settings that keep any method's steps short; each method takes the keys it has.
const TINY: &str = "learning_rate = 1e-3\nbatch = 2\nperturbations = 2\nretain_batch = 2\n\
                    fisher_images = 2\nalignment_steps = 1\n[synthetic]\ncount = 2\nmax_steps = 5\nretain_per_class = 1\n";

/// Two steps at most.
const SHORT: &str = "max_steps = 2\nepochs = 1\nnoise_steps = 1\nimpair_steps = 1\nrepair_steps = 0\n\
                     forget_steps = 2\nremind_steps = 1\n";

/// Many steps and no early stop, so only a cancellation ends the run early.
const LONG: &str = "max_steps = 50\nepochs = 10\nimpair_steps = 50\nstop_accuracy = 0.0\n";

/// The demo ViT forgetting the fruit orange with captioned forget and retain pictures, so
/// every kind of method has what it needs.
fn opened(method: &dyn UnlearningMethod, schedule: &str) -> Opened {
    let text = r#"
seed = 1
[model]
path = "demo:vit"
device = "cpu"
[forget]
dataset = "shapes:fruits?seed=31&n=20"
classes = ["orange"]
images = "shapes:fruits?seed=32&n=20"
retain = "shapes:shapes?seed=33&n=6"
[method]
name = "lip"
[eval]
datasets = []
relearn_steps = 0
retrieval_per_class = 0
"#;
    let mut recipe = Recipe::parse(text).unwrap();
    recipe.method.name = method.name().into();
    let settings: toml::Table = format!("{schedule}{TINY}").parse().unwrap();
    recipe.method.settings = known_settings(method, &settings);
    Opened::open(recipe, text.into()).unwrap()
}

#[test]
fn every_method_runs_from_a_recipe_and_changes_the_model() {
    for method in REGISTRY {
        let opened = opened(*method, SHORT);
        let finished = execute(&opened, &AtomicBool::new(false), |_| {})
            .unwrap_or_else(|e| panic!("{}: {e:#}", method.name()));
        assert_eq!(finished.metrics.method, method.name());
        assert!(finished.metrics.steps >= 1, "{}", method.name());
        let original = opened.checkpoint.load(&Device::flex()).unwrap();
        assert_ne!(
            named_tensors(&original, Format::OpenClip, None),
            named_tensors(&finished.model, Format::OpenClip, None),
            "{} left the model as it was",
            method.name()
        );
    }
}

#[test]
fn every_method_stops_when_cancelled_and_keeps_nothing() {
    for method in REGISTRY {
        let opened = opened(*method, LONG);
        let cancel = AtomicBool::new(false);
        let result = execute(&opened, &cancel, |event| {
            if matches!(event, Event::Step { .. }) {
                cancel.store(true, Ordering::Relaxed);
            }
        });
        let error = result
            .err()
            .unwrap_or_else(|| panic!("{} was not cancelled", method.name()));
        assert!(
            matches!(
                error.downcast_ref::<RunStopped>(),
                Some(RunStopped::Cancelled { .. })
            ),
            "{}: {error:#}",
            method.name()
        );
    }
}

#[test]
fn every_method_stops_on_a_non_finite_loss_and_keeps_nothing() {
    for method in REGISTRY {
        if !method.defaults().contains_key("learning_rate") {
            // A method without a learning rate (SLUG searches its step) cannot be made to
            // blow up from a recipe; the runner's own tests cover its guarantee.
            continue;
        }
        let mut opened = opened(*method, LONG);
        let mut settings = opened.recipe.method.settings.clone();
        settings.insert("learning_rate".into(), toml::Value::Float(1e30));
        if method.defaults().contains_key("noise_steps") {
            settings.insert("noise_steps".into(), toml::Value::Integer(1));
        }
        opened.recipe.method.settings = settings;
        let error = execute(&opened, &AtomicBool::new(false), |_| {})
            .err()
            .unwrap_or_else(|| panic!("{} finished with non-finite weights", method.name()));
        assert!(
            matches!(
                error.downcast_ref::<RunStopped>(),
                Some(RunStopped::Failed(reason)) if reason.contains("finite")
            ),
            "{}: {error:#}",
            method.name()
        );
    }
}
