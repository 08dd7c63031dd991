//! Forgetting red in the demo ViT, run from the shipped recipes. Lip as published: the forgotten
//! colour must fall to near zero while the other colours lose far less (it does not keep them
//! within 3 points; the README reports the numbers). Emb with the retain term: the full bars.

use std::sync::atomic::AtomicBool;

use lethe::eval::metrics::Metrics;
use lethe::recipe::Recipe;
use lethe::workflow::{Opened, execute};

/// Runs a shipped recipe on the CPU, measuring only the datasets named in `keep`.
fn run(recipe_file: &str, keep: &[&str]) -> Metrics {
    let path = format!("{}/recipes/{recipe_file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut recipe = Recipe::parse(&text).unwrap();
    recipe.model.device = "cpu".into();
    recipe
        .eval
        .datasets
        .retain(|spec| keep.iter().any(|k| spec.starts_with(k)));
    recipe.eval.relearn_steps = 0;
    recipe.eval.retrieval_per_class = 0;
    let opened = Opened::open(recipe, text).unwrap();
    execute(&opened, &AtomicBool::new(false), |_| {})
        .unwrap()
        .metrics
}

#[test]
fn lip_forgets_red_far_more_than_the_other_colours() {
    let m = &run("forget-red-vit.toml", &[]);
    let colours = &m.datasets[0];
    let (others_before, others_after) = (
        colours.other_classes_before.unwrap(),
        colours.other_classes_after.unwrap(),
    );
    let target_drop = m.target.before - m.target.after;
    let others_drop = others_before - others_after;
    assert!(
        m.target.before > 0.9,
        "the demo model knows red: {:?}",
        m.target
    );
    assert!(
        m.target.after <= 0.15,
        "red still recognised: {:?}",
        m.target
    );
    assert!(
        target_drop > 3.0 * others_drop,
        "red fell by {target_drop:.3}, the other colours by {others_drop:.3}"
    );
}

#[test]
fn emb_with_the_retain_term_forgets_red_and_keeps_everything_else_within_3_points() {
    let m = &run("forget-red-vit-retain.toml", &["shapes:fruits"]);
    assert!(m.target.before > 0.9, "{:?}", m.target);
    assert!(
        m.target.after <= 0.10,
        "red still recognised: {:?}",
        m.target
    );
    for dataset in &m.datasets {
        let (before, after) = match (dataset.other_classes_before, dataset.other_classes_after) {
            (Some(before), Some(after)) => (before, after),
            _ => (dataset.before, dataset.after),
        };
        assert!(
            before - after <= 0.03,
            "{} fell from {before:.3} to {after:.3}",
            dataset.name
        );
    }
    assert_eq!(
        m.datasets.len(),
        2,
        "the colours and the fruits were measured"
    );
    assert!(m.avg_score <= 0.05, "Avg Score {}", m.avg_score);
}
