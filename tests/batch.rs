//! Batches of concepts through `lethe run`: three colours forgotten one after another on the
//! demo ViT give three rows, every concept is read again after every run, a deliberately
//! failing check gates the exit code, and a joint batch forgets all three in one run.

use std::path::Path;
use std::process::{Command, Output};

/// Gradient ascent on real pictures of each colour, a handful of steps, small evaluation sets.
const THREE_COLOURS: &str = r#"
seed = 2
[model]
path = "demo:vit"
device = "cpu"
[forget]
dataset = "shapes:colors?seed=51&n=300"
images = "shapes:colors?seed=52&n=80"
[method]
name = "ga"
learning_rate = 3e-4
batch = 4
max_steps = 8
stop_accuracy = 0.1
[eval]
datasets = ["shapes:fruits?seed=53&n=40"]
relearn_steps = 0
retrieval_per_class = 0
[audit]
target_at_most = 0.5
retained_within = 0.5
templates_at_most = false
[[scenario]]
name = "red (strict)"
classes = ["red"]
[scenario.audit]
target_at_most = 0.0
retained_within = false
templates_at_most = false
[[scenario]]
classes = ["green"]
[[scenario]]
classes = ["blue"]
"#;

fn lethe(recipe: &str, dir: &Path, out: &Path) -> Output {
    let path = dir.join("batch.toml");
    std::fs::write(&path, recipe).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("XDG_CACHE_HOME", dir)
        .output()
        .expect("the lethe binary runs")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_sequential_batch_reports_each_concept_and_gates_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("batch");
    let output = lethe(THREE_COLOURS, dir.path(), &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Not one red picture may be recognised after the batch: the runs after red's bring
    // some back, so that check fails, and the exit code says so.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let batch = json(&out.join("batch.json"));
    let concepts = batch["concepts"].as_array().unwrap();
    let names: Vec<&str> = concepts
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["red (strict)", "green", "blue"]);
    for concept in concepts {
        let target = &concept["target"];
        let (before, after) = (
            target["before"]["value"].as_f64().unwrap(),
            target["after"]["value"].as_f64().unwrap(),
        );
        assert!(before > 0.9, "{concept}");
        assert!(
            after < before - 0.3,
            "each colour is forgotten in its own run: {concept}"
        );
        assert!(target["after"]["n"].as_u64().unwrap() > 5, "{concept}");
        // Each run's own result folder, with its recipe and metrics.
        let folder = out.join(concept["folder"].as_str().unwrap());
        assert!(
            folder.join("metrics.json").is_file(),
            "{}",
            folder.display()
        );
        let checks = concept["checks"].as_array().unwrap();
        let kinds: Vec<&str> = checks
            .iter()
            .map(|c| c["check"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.first(), Some(&"target"), "{concept}");
        assert_eq!(kinds.last(), Some(&"still-forgotten"), "{concept}");
    }
    // The strict concept has its own criteria (no retained checks); the others take the
    // recipe's, which keep the head's other classes and the fruits within 50 points.
    assert_eq!(concepts[0]["checks"].as_array().unwrap().len(), 2);
    assert_eq!(concepts[1]["checks"].as_array().unwrap().len(), 4);
    // The fruits are judged from before the first run to after the last as well.
    let whole = batch["batch_checks"].as_array().unwrap();
    assert_eq!(whole.len(), 1, "{batch}");
    assert_eq!(whole[0]["check"], "retained");
    assert!(
        whole[0]["subject"]
            .as_str()
            .unwrap()
            .ends_with("(whole batch)")
    );
    assert_eq!(batch["verdict"], "fail");
    assert_eq!(concepts[0]["verdict"], "fail", "{}", concepts[0]);
    // Runs after the first start from the previous run's checkpoint, and their recipes say so.
    let second: lethe::recipe::Recipe = toml::from_str(
        &std::fs::read_to_string(
            out.join(concepts[1]["folder"].as_str().unwrap())
                .join("recipe.toml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        Path::new(&second.model.path),
        out.join(concepts[0]["folder"].as_str().unwrap())
    );
    // Before, then after each run: every concept read every time.
    let cross = batch["cross_effects"].as_array().unwrap();
    assert_eq!(cross.len(), 4);
    for row in cross {
        assert_eq!(row["targets"].as_array().unwrap().len(), 3, "{row}");
    }
    let red_after_all = cross[3]["targets"][0]["value"].as_f64().unwrap();
    assert_eq!(
        concepts[0]["target_at_end"]["value"].as_f64().unwrap(),
        red_after_all
    );
    // The batch folder holds the final model, the batch recipe and the report, verdict first.
    assert_eq!(
        std::fs::read_to_string(out.join("recipe.toml")).unwrap(),
        THREE_COLOURS
    );
    lethe::clip::checkpoint::Checkpoint::open(&out).unwrap();
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let first_section = report.lines().find(|l| l.starts_with("## ")).unwrap();
    assert!(first_section.starts_with("## Verdict:"), "{report}");
    assert!(report.contains("red (strict)"), "{report}");
    // One SHA256SUMS at the top covers the concepts' folders too, and nothing has changed since.
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let first_concept = sums
        .lines()
        .any(|l| l.contains("  concepts/01-red") && l.ends_with("/metrics.json"));
    assert!(first_concept, "{sums}");
    assert!(sums.contains("  batch.json\n"), "{sums}");
    assert_eq!(
        lethe::eval::manifest::check_sha256sums(&out).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn a_joint_batch_forgets_every_concept_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("joint");
    let recipe = THREE_COLOURS
        .replace("target_at_most = 0.0", "target_at_most = 0.5")
        .replace("max_steps = 8", "max_steps = 24")
        .replace("[eval]", "[batch]\nmode = \"joint\"\n[eval]");
    let output = lethe(&recipe, dir.path(), &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let batch = json(&out.join("batch.json"));
    assert_eq!(batch["mode"], "joint");
    assert_eq!(batch["verdict"], "pass", "{batch}");
    let concepts = batch["concepts"].as_array().unwrap();
    assert_eq!(concepts.len(), 3);
    for concept in concepts {
        assert!(
            concept["folder"].is_null(),
            "one run, no folder per concept"
        );
        assert!(
            concept["target"]["after"]["value"].as_f64().unwrap() <= 0.5,
            "{concept}"
        );
    }
    let metrics = json(&out.join("metrics.json"));
    assert_eq!(
        metrics["classes"],
        serde_json::json!(["red", "green", "blue"])
    );
}
