//! The `lethe` binary end to end: output formats and one-line errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_close, fixtures, read_tensors};

fn lethe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .output()
        .expect("the lethe binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn assert_one_line_error(output: &Output, needles: &[&str]) {
    assert!(!output.status.success(), "expected failure");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "'{needle}' not in: {stderr}");
    }
}

#[test]
fn embed_json_matches_the_reference() {
    let model = fixtures().join("openclip-vit");
    let images = fixtures().join("images");
    let output = lethe(&[
        "embed",
        "--model",
        path(&model),
        "--device",
        "cpu",
        "--image",
        path(&images.join("a.png")),
        "--image",
        path(&images.join("b.png")),
        "--text",
        "a photo of a cat.",
        "--text",
        "A DOG!!  running   on the beach",
        "--text",
        "ok",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is only JSON");
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 2, "exactly image_embeds and text_embeds");
    let reference = read_tensors(&model.join("reference.safetensors"));
    for key in ["image_embeds", "text_embeds"] {
        let rows: Vec<Vec<f32>> = serde_json::from_value(json[key].clone()).unwrap();
        assert_eq!(rows.len(), reference[key].0[0], "{key} rows");
        assert_close(key, &rows.concat(), &reference[key].1, 1e-4);
    }
}

#[test]
fn classify_prints_a_distribution_over_the_labels() {
    let output = lethe(&[
        "classify",
        "--model",
        path(&fixtures().join("hf-vit")),
        "--device",
        "cpu",
        "--image",
        path(&fixtures().join("images/a.png")),
        "--labels",
        "cat, dog,car",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut labels = Vec::new();
    let mut total = 0.0;
    for line in stdout.lines() {
        let mut parts = line.split_whitespace();
        labels.push(parts.next().unwrap().to_string());
        total += parts.next().unwrap().parse::<f64>().unwrap();
    }
    labels.sort();
    assert_eq!(labels, ["car", "cat", "dog"]);
    assert!((total - 1.0).abs() < 2e-3, "probabilities sum to {total}");
}

#[test]
fn a_corrupt_image_is_named() {
    let corrupt = fixtures().join("images/corrupt.png");
    let output = lethe(&[
        "embed",
        "--model",
        path(&fixtures().join("hf-vit")),
        "--device",
        "cpu",
        "--image",
        path(&corrupt),
    ]);
    assert_one_line_error(&output, &["corrupt.png"]);
}

#[test]
fn a_broken_jpeg_is_named_without_a_panic_trace() {
    let temp = tempfile::tempdir().unwrap();
    let broken = temp.path().join("broken.jpg");
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    bytes.extend(std::iter::repeat_n(0x5A, 200));
    std::fs::write(&broken, bytes).unwrap();
    let output = lethe(&[
        "embed",
        "--model",
        path(&fixtures().join("hf-vit")),
        "--device",
        "cpu",
        "--image",
        path(&broken),
    ]);
    assert_one_line_error(&output, &["broken.jpg"]);
}

#[test]
fn a_missing_image_or_folder_is_named() {
    let output = lethe(&[
        "embed",
        "--model",
        path(&fixtures().join("hf-vit")),
        "--image",
        "/no/such/cat.jpg",
    ]);
    assert_one_line_error(&output, &["/no/such/cat.jpg", "no such image file"]);
    let output = lethe(&["embed", "--model", "/no/such/model", "--text", "hi"]);
    assert_one_line_error(&output, &["/no/such/model", "no such file or folder"]);
}

#[test]
fn an_unreadable_checkpoint_is_named() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::write(temp.path().join("open_clip_config.json"), "{}").unwrap();
    std::fs::write(temp.path().join("open_clip_model.safetensors"), "garbage").unwrap();
    let output = lethe(&[
        "classify",
        "--model",
        path(temp.path()),
        "--image",
        path(&fixtures().join("images/a.png")),
        "--labels",
        "a,b",
    ]);
    assert_one_line_error(&output, &["open_clip_config.json"]);

    std::fs::copy(
        fixtures().join("openclip-vit/open_clip_config.json"),
        temp.path().join("open_clip_config.json"),
    )
    .unwrap();
    let output = lethe(&["embed", "--model", path(temp.path()), "--text", "hi"]);
    assert_one_line_error(
        &output,
        &[
            "open_clip_model.safetensors",
            "not a valid safetensors file",
        ],
    );
}

#[test]
fn an_unknown_device_is_refused() {
    let output = lethe(&[
        "embed",
        "--model",
        path(&fixtures().join("hf-vit")),
        "--device",
        "tpu",
        "--text",
        "x",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown device 'tpu'"));
}

#[test]
fn methods_lists_every_method_with_a_pasteable_settings_table() {
    let output = lethe(&["methods"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for name in ["lip", "emb", "ulip"] {
        assert!(text.contains(&format!("name = \"{name}\"")), "{text}");
    }
    // Each method's block is a valid recipe fragment whose settings are the defaults.
    let first = text.split("\n\n\n").next().unwrap();
    let fragment: toml::Table = toml::from_str(first).unwrap();
    let mut method = fragment["method"].as_table().unwrap().clone();
    assert_eq!(method.remove("name").unwrap().as_str(), Some("lip"));
    let options: lethe::unlearn::methods::lip::LipOptions =
        lethe::unlearn::methods::parse_options("lip", &method).unwrap();
    assert_eq!(options, lethe::unlearn::methods::lip::LipOptions::default());
}

/// A train-demo run of a few steps per stage, on the CPU.
const TINY_TRAINING: [&str; 14] = [
    "--attributes-steps",
    "2",
    "--attributes-batch",
    "4",
    "--lit-steps",
    "1",
    "--lit-batch",
    "4",
    "--lit-pool",
    "8",
    "--save-every",
    "0",
    "--device",
    "cpu",
];

#[test]
fn train_demo_trains_in_stages_and_reuses_them_on_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rn");
    let mut args = vec!["train-demo", "--arch", "rn", "--out", path(&out)];
    args.extend(TINY_TRAINING);
    let first = lethe(&args);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(out.join("open_clip_model.safetensors").is_file());
    assert!(out.join("stages/1-attributes/progress.json").is_file());
    assert!(out.join("stages/2-lit/progress.json").is_file());
    // The held-out accuracies are reported on stdout, one line per dataset.
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(stdout.matches("accuracy").count(), 4, "{stdout}");
    let again = lethe(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains("stage attributes: already trained, reused")
            && stderr.contains("stage lit: already trained, reused"),
        "{stderr}"
    );
}

#[test]
fn train_demo_refuses_to_overwrite_its_starting_checkpoint_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init");
    let mut args = vec!["train-demo", "--arch", "rn", "--out", path(&init)];
    args.extend(TINY_TRAINING);
    assert!(lethe(&args).status.success());
    let before = std::fs::read(init.join("open_clip_model.safetensors")).unwrap();
    let mut same = vec!["train-demo", "--arch", "rn", "--init", path(&init)];
    same.extend(["--out", path(&init)]);
    same.extend(TINY_TRAINING);
    assert_one_line_error(&lethe(&same), &["--out", "--init"]);
    let after = std::fs::read(init.join("open_clip_model.safetensors")).unwrap();
    assert_eq!(before, after, "the starting checkpoint was modified");
    let out = dir.path().join("bad");
    let mut bad = vec!["train-demo", "--arch", "vit", "--out", path(&out)];
    bad.extend(["--lit-batch", "1", "--lit-pool", "8", "--device", "cpu"]);
    assert_one_line_error(&lethe(&bad), &["--lit-batch", "at least 2"]);
}

#[test]
fn explain_draws_each_models_map_beside_the_picture() {
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("scene.png");
    let grid = lethe(&[
        "grid",
        "--dataset",
        "shapes:shapes?seed=5&n=1",
        "--columns",
        "1",
        "--rows",
        "1",
        "--tile",
        "64",
        "--out",
        path(&picture),
    ]);
    assert!(grid.status.success(), "{grid:?}");
    let out = dir.path().join("heat.png");
    let explained = lethe(&[
        "explain",
        "--model",
        "demo:vit",
        "--compare",
        "demo:rn",
        "--image",
        path(&picture),
        "--out",
        path(&out),
    ]);
    let stdout = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.status.success(), "{explained:?}");
    assert!(
        stdout.contains("panel 2: demo:vit — attention rollout"),
        "{stdout}"
    );
    assert!(
        stdout.contains("panel 3: demo:rn — attention-pool map"),
        "{stdout}"
    );
    // Three 256-pixel panels with 8-pixel gaps, and the colour scale under the maps.
    let sheet = image::open(&out).unwrap().to_rgb8();
    assert_eq!(sheet.dimensions(), (3 * 264 + 8, 256 + 24 + 14));
    let panel = |i: u32| image::imageops::crop_imm(&sheet, 8 + i * 264, 8, 256, 256).to_image();
    let (seen, vit, rn) = (panel(0), panel(1), panel(2));
    assert_ne!(seen, vit, "the map is drawn over the picture");
    assert_ne!(vit, rn, "the two models look at different places");

    let toward = dir.path().join("toward.png");
    let explained = lethe(&[
        "explain",
        "--model",
        "demo:vit",
        "--compare",
        "demo:rn",
        "--image",
        path(&picture),
        "--text",
        "a photo of a star",
        "--out",
        path(&toward),
    ]);
    let stdout = String::from_utf8_lossy(&explained.stdout);
    assert!(explained.status.success(), "{explained:?}");
    assert!(
        stdout
            .contains("panel 2: demo:vit — gradient-weighted rollout toward \"a photo of a star\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("panel 3: demo:rn — Grad-CAM toward \"a photo of a star\""),
        "{stdout}"
    );
    let toward = image::open(&toward).unwrap().to_rgb8();
    assert_eq!(toward.dimensions(), sheet.dimensions());
    assert_ne!(
        image::imageops::crop_imm(&toward, 8 + 264, 8, 256, 256).to_image(),
        vit,
        "the map toward a text is not the attention map"
    );
    let empty = lethe(&[
        "explain",
        "--image",
        path(&picture),
        "--text",
        " ",
        "--out",
        path(&out),
    ]);
    assert_one_line_error(&empty, &["--text is empty"]);

    let refused = lethe(&[
        "explain",
        "--image",
        path(&picture),
        "--out",
        path(&out),
        "--opacity",
        "1.5",
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("--opacity 1.5: give a number from 0 to 1"),
        "{stderr}"
    );
}

#[test]
fn bench_step_times_a_registered_method_on_a_recipe_and_refuses_unknown_ones() {
    let recipe = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/recipes/forget-red-vit-paper.toml"
    );
    let output = lethe(&[
        "bench", "step", "--recipe", recipe, "--method", "ga", "--batch", "2", "--iters", "1",
        "--device", "cpu", "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
    assert_eq!(json["method"], "ga");
    assert_eq!(json["batch"], 2);
    // The paper recipe forgets "red" on the colours head: 10 classes.
    assert_eq!(json["classes"], 10);
    let seconds = json["seconds_per_step"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds.is_finite(), "{json}");

    let unknown = lethe(&["bench", "step", "--recipe", recipe, "--method", "forgetall"]);
    assert_one_line_error(&unknown, &["--method", "forgetall", "lip"]);
    let no_batch = lethe(&[
        "bench", "step", "--recipe", recipe, "--method", "slug", "--batch", "2",
    ]);
    assert_one_line_error(&no_batch, &["--batch", "slug"]);
}

/// The README is the user's manual: every command (and `bench` subcommand) the binary accepts
/// and every example recipe shipped in `recipes/` has to be found there, so a section lost in
/// an edit, or a command added without a word, fails here.
#[test]
fn the_readme_names_every_command_and_every_recipe() {
    use clap::CommandFactory;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut missing = Vec::new();
    let cli = lethe::cli::Cli::command();
    for command in cli.get_subcommands() {
        let name = format!("lethe {}", command.get_name());
        let nested: Vec<String> = command
            .get_subcommands()
            .map(|sub| format!("{name} {}", sub.get_name()))
            .collect();
        for usage in std::iter::once(name).chain(nested) {
            if !readme.contains(&usage) {
                missing.push(usage);
            }
        }
    }
    for entry in std::fs::read_dir(root.join("recipes")).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        if file.ends_with(".toml") && !readme.contains(&file) {
            missing.push(file);
        }
    }
    assert!(missing.is_empty(), "not in README.md: {missing:?}");
}
