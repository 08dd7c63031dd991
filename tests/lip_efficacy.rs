//! Forgetting in the demo models, run from the shipped recipes. Lip as published: the heart
//! must fall to near zero while the other shapes lose less than half as much (it does not keep
//! them within 3 points; the README reports the numbers). Emb with the retain term and the stop
//! judged on real pictures: star and heart in the demo ViT, green and red among its colours; on
//! the demo ResNet, blue, star and heart within the ResNet's bars, and apple from real forget
//! pictures.

use std::sync::atomic::AtomicBool;

use lethe::eval::metrics::Metrics;
use lethe::recipe::Recipe;
use lethe::workflow::{Opened, execute};

/// Runs a shipped recipe on the CPU, measuring only the datasets named in `keep`, forgetting
/// `class` instead of the recipe's class when one is given.
fn run(recipe_file: &str, keep: &[&str], class: Option<&str>) -> Metrics {
    let path = format!("{}/recipes/{recipe_file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut recipe = Recipe::parse(&text).unwrap();
    recipe.model.device = "cpu".into();
    if let Some(class) = class {
        recipe.forget.classes = vec![class.into()];
    }
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
fn lip_forgets_the_heart_far_more_than_the_other_shapes() {
    let m = &run("forget-heart-vit-lip.toml", &[], None);
    let shapes = &m.datasets[0];
    let (others_before, others_after) = (
        shapes.other_classes_before.unwrap().value,
        shapes.other_classes_after.unwrap().value,
    );
    let target_drop = m.target.before.value - m.target.after.value;
    let others_drop = others_before - others_after;
    assert!(
        m.target.before.value > 0.9,
        "the demo model knows the heart: {:?}",
        m.target
    );
    assert!(
        m.target.after.value <= 0.15,
        "heart still recognised: {:?}",
        m.target
    );
    assert!(
        target_drop > 2.0 * others_drop,
        "heart fell by {target_drop:.3}, the other shapes by {others_drop:.3}"
    );
}

/// The paper-quality bars: the target at most 0.10 after, every other dataset within 3 points
/// of before and the head's other classes within `others` points, Avg Score at most 0.05.
fn assert_meets_the_bars(m: &Metrics, measured: usize, others: f64) {
    let class = &m.classes[0];
    assert!(
        m.target.before.value > 0.9,
        "the demo model knows {class}: {:?}",
        m.target
    );
    assert!(
        m.target.after.value <= 0.10,
        "{class} still recognised: {:?}",
        m.target
    );
    for dataset in &m.datasets {
        let (before, after, bar) = match (dataset.other_classes_before, dataset.other_classes_after)
        {
            (Some(before), Some(after)) => (before.value, after.value, others),
            _ => (dataset.before.value, dataset.after.value, 0.03),
        };
        assert!(
            before - after <= bar,
            "forgetting {class}: {} fell from {before:.3} to {after:.3}",
            dataset.name
        );
    }
    assert_eq!(m.datasets.len(), measured, "every dataset was measured");
    assert!(
        m.avg_score <= 0.05,
        "forgetting {class}: Avg Score {}",
        m.avg_score
    );
}

/// The star recipe meets the full bars on star and on the heart, which it was not written for.
#[test]
fn emb_with_the_retain_term_and_a_verification_set_forgets_star_and_heart() {
    let m = run(
        "forget-star-vit.toml",
        &["shapes:colors", "shapes:fruits"],
        None,
    );
    assert_meets_the_bars(&m, 3, 0.03);
    let m = run(
        "forget-star-vit.toml",
        &["shapes:colors", "shapes:fruits"],
        Some("heart"),
    );
    assert_meets_the_bars(&m, 3, 0.03);
}

#[test]
fn with_a_verification_set_green_and_red_are_forgotten_within_the_bars() {
    for class in ["green", "red"] {
        let m = run(
            "forget-green-vit-verify.toml",
            &["shapes:fruits"],
            Some(class),
        );
        assert_meets_the_bars(&m, 2, 0.03);
    }
}

#[test]
fn on_the_demo_resnet_blue_is_forgotten_within_its_bars() {
    let m = run("forget-blue-rn-verify.toml", &["shapes:fruits"], None);
    assert!(
        m.target.before.value > 0.9,
        "the demo ResNet knows blue: {:?}",
        m.target
    );
    assert!(
        m.target.after.value <= 0.10,
        "blue still recognised: {:?}",
        m.target
    );
    assert_eq!(
        m.datasets.len(),
        2,
        "the colours and the fruits were measured"
    );
    assert!(m.avg_score <= 0.08, "Avg Score {}", m.avg_score);
}

/// Real forget pictures instead of synthetic ones: apple goes on the demo ResNet while the
/// other fruits and the colours stay within 3 points.
#[test]
fn on_the_demo_resnet_apple_is_forgotten_from_real_pictures() {
    let m = run("forget-apple-rn-real.toml", &["shapes:colors"], None);
    assert!(
        m.forget_images.source.starts_with("shapes:fruits"),
        "the real pictures were used: {:?}",
        m.forget_images
    );
    assert_meets_the_bars(&m, 2, 0.03);
}

/// The ResNet's bars on a shape: the class at most 0.10 after and Avg Score at most 0.08, for
/// the recipe's star and for a shape the recipe was not written for.
#[test]
fn on_the_demo_resnet_star_and_heart_are_forgotten_within_its_bars() {
    for class in ["star", "heart"] {
        let m = run(
            "forget-star-rn-verify.toml",
            &["shapes:colors"],
            Some(class),
        );
        assert!(
            m.target.before.value > 0.8,
            "the demo ResNet knows {class}: {:?}",
            m.target
        );
        assert!(
            m.target.after.value <= 0.10,
            "{class} still recognised: {:?}",
            m.target
        );
        assert_eq!(
            m.datasets.len(),
            2,
            "the shapes and the colours were measured"
        );
        assert!(
            m.avg_score <= 0.08,
            "forgetting {class}: Avg Score {}",
            m.avg_score
        );
    }
}
