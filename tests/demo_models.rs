//! The built-in demo models: they load by name, and they are good enough at the Shapes world
//! to be a meaningful test bed for unlearning (zero-shot accuracy on seeds never trained on).

use std::process::Command;

use lethe::backend::DeviceChoice;
use lethe::data::dataset;
use lethe::engine::LoadedModel;
use lethe::eval::zero_shot;

/// Shape is the weak point of both models (see the README): about 0.15 on `shapes` (chance
/// 0.10), so only colour × shape is held to a floor, at ten times chance, which still needs the
/// colour right and some shape information.
const COLOR_SHAPES_FLOOR: f64 = 0.10;

/// Evaluates `model` on each `(spec, bar)` and fails listing every dataset below its bar.
fn assert_bars(model: &str, bars: &[(&str, f64)]) {
    let loaded = LoadedModel::open_spec(model, DeviceChoice::Cpu).unwrap();
    let mut report = Vec::new();
    let mut failed = false;
    for (spec, bar) in bars {
        let data = dataset::open(spec).unwrap();
        let accuracy = zero_shot(&loaded, &data, &data.templates, 250).accuracy;
        failed |= accuracy < *bar;
        report.push(format!("{spec}: {accuracy:.3} (bar {bar})"));
    }
    assert!(!failed, "{model} below its bars:\n{}", report.join("\n"));
}

#[test]
fn demo_vit_reads_colours_and_fruits() {
    assert_bars(
        "demo:vit",
        &[
            ("shapes:colors?seed=7002&n=400", 0.95),
            ("shapes:fruits?seed=7003&n=300", 0.90),
            ("shapes:color-shapes?seed=7004&n=500", COLOR_SHAPES_FLOOR),
        ],
    );
}

#[test]
fn demo_rn_reads_colours_and_fruits() {
    assert_bars(
        "demo:rn",
        &[
            ("shapes:colors?seed=7102&n=400", 0.90),
            ("shapes:fruits?seed=7103&n=300", 0.85),
            ("shapes:color-shapes?seed=7104&n=500", COLOR_SHAPES_FLOOR),
        ],
    );
}

#[test]
fn eval_uses_the_demo_vit_when_no_model_is_given() {
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["eval", "--device", "cpu", "--json", "--dataset"])
        .arg("shapes:colors?seed=4242&n=200")
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let accuracy = json["datasets"][0]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.95, "colour accuracy {accuracy}");
    let written: Vec<_> = std::fs::read_dir(cache.path().join("lethe"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        written.len() == 1 && written[0].starts_with("demo-vit-"),
        "{written:?}"
    );
}

#[test]
fn unknown_demo_models_are_refused_by_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args([
            "eval",
            "--model",
            "demo:vgg",
            "--dataset",
            "shapes:shapes?n=5",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown demo model 'demo:vgg'"), "{stderr}");
}
