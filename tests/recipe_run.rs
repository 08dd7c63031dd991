//! `lethe run` end to end on a deliberately short recipe: what lands in the output folder, that
//! the numbers are tied to the files by their hashes, that the input is never touched, and that
//! bad recipes and occupied folders are refused with a message naming the file.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

use lethe::clip::checkpoint::named_tensors;
use lethe::clip::weights::Format;
use lethe::eval::metrics::hash_folder;
use lethe::recipe::Recipe;
use lethe::unlearn::job::Event;
use lethe::workflow::{Opened, execute};

/// A run of a few seconds: three Lip steps on four synthetic images of "red".
const SHORT: &str = r#"
seed = 5
[model]
path = "demo:rn"
device = "cpu"
[forget]
dataset = "shapes:colors?seed=11&n=60"
classes = ["red"]
[method]
name = "lip"
learning_rate = 1e-3
perturbations = 2
batch = 2
max_steps = 3
[method.synthetic]
count = 4
max_steps = 40
[eval]
datasets = ["shapes:fruits?seed=12&n=30"]
relearn_steps = 2
retrieval_per_class = 3
"#;

fn lethe(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("the lethe binary runs")
}

/// `lethe run RECIPE --out OUT`.
fn lethe_run(recipe: &Path, out: &Path, cache: &Path) -> Output {
    lethe(
        &[
            "run",
            recipe.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        cache,
    )
}

/// The short recipe with `key = "spec"` added to its `[forget]` table.
fn short_with_forget(key: &str, spec: &str) -> String {
    SHORT.replace(
        "classes = [\"red\"]\n",
        &format!("classes = [\"red\"]\n{key} = \"{spec}\"\n"),
    )
}

/// The audit's verdict gates the exit code: 0 when every check passes, 3 when one fails, and
/// the result is written either way with the verdicts first in the report.
#[test]
fn an_audit_judges_the_run_and_gates_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    for (audit, code, verdict) in [
        // Three Lip steps do not forget red: a 0% bar fails.
        ("target_at_most = 0.0\ntemplates_at_most = false", 3, "fail"),
        // Bars nothing can miss pass.
        (
            "target_at_most = 1.0\nretained_within = 1.0\ntemplates_at_most = 1.0",
            0,
            "pass",
        ),
    ] {
        let recipe = dir.path().join(format!("{verdict}.toml"));
        std::fs::write(&recipe, format!("{SHORT}[audit]\n{audit}\n")).unwrap();
        let out = dir.path().join(verdict);
        let output = lethe_run(&recipe, &out, dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{verdict}: {stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!(
                "audit: {}",
                if code == 0 { "pass" } else { "FAIL" }
            )),
            "{stdout}"
        );
        let metrics: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        let audit = &metrics["audit"];
        assert_eq!(audit["verdict"], verdict, "{audit}");
        let checks = audit["checks"].as_array().unwrap();
        assert_eq!(checks[0]["check"], "target");
        // The forget dataset's other classes and the fruits: one retained check each.
        let retained = checks.iter().filter(|c| c["check"] == "retained").count();
        assert_eq!(retained, 2, "{audit}");
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        let verdict_line = report.lines().find(|l| l.starts_with("## ")).unwrap();
        assert!(verdict_line.starts_with("## Verdict:"), "{report}");
        if code == 3 {
            assert!(stderr.contains("the audit failed"), "{stderr}");
        }
    }
}

/// Opens and runs recipe `text`, which must fail; the error's message.
fn failure(text: String) -> String {
    let opened = Opened::open(Recipe::parse(&text).unwrap(), text).unwrap();
    execute(&opened, &AtomicBool::new(false), |_| {})
        .err()
        .expect("the run fails")
        .to_string()
}

/// Opens `out/report.html` in headless Chromium (Debian's `chromium`) and checks, on the page as
/// the browser built it, that every picture decoded and that the numbers are `metrics.json`'s.
fn assert_report_page_in_browser(out: &Path, metrics: &serde_json::Value) {
    // The check runs in a copy of the page with a script that records, once the page has
    // loaded, how many of its pictures the browser decoded.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    let probe = "<script>window.addEventListener('load', () => { \
        const all = [...document.images]; \
        const decoded = all.filter(i => i.complete && i.naturalWidth > 0).length; \
        document.body.setAttribute('data-pictures', decoded + '/' + all.length); });</script>";
    let checked = out.parent().unwrap().join("report-check.html");
    std::fs::write(
        &checked,
        page.replace("</body>", &format!("{probe}</body>")),
    )
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", checked.display());
    let browser = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &url,
        ])
        .output()
        .expect("Debian's chromium runs (apt-get install chromium; .ci/run installs it)");
    let dom = String::from_utf8_lossy(&browser.stdout);
    assert!(browser.status.success() && !dom.is_empty(), "{browser:?}");
    let images = page.matches("<img ").count();
    assert_eq!(
        images, 2,
        "the synthetic pictures and the heatmaps are on the page"
    );
    assert!(
        dom.contains(&format!("data-pictures=\"{images}/{images}\"")),
        "not every picture decoded: {}",
        dom.lines().find(|l| l.contains("<body")).unwrap_or("")
    );
    let percent = |e: &serde_json::Value| format!("{:.1}%", 100.0 * e["value"].as_f64().unwrap());
    for row in metrics["datasets"].as_array().unwrap() {
        let name = row["name"].as_str().unwrap().replace('&', "&amp;");
        let line = dom
            .lines()
            .find(|l| l.contains(&format!("<td><code>{name}</code></td>")))
            .unwrap_or_else(|| panic!("no row for {name} in the page"));
        for key in ["before", "after"] {
            assert!(
                line.contains(&percent(&row[key])),
                "{key} of {name}: {line}"
            );
        }
    }
    for class in metrics["per_class"].as_array().unwrap() {
        let bar = format!(
            "{} → {}",
            percent(&class["before"]),
            percent(&class["after"])
        );
        assert!(dom.contains(&bar), "no bar labelled {bar}");
    }
    let score = format!(
        "<strong>{:.3}</strong>",
        metrics["avg_score"].as_f64().unwrap()
    );
    assert!(dom.contains(&score), "no Avg Score {score}");
    assert_eq!(
        dom.matches("<svg class=\"map\"").count(),
        2,
        "the embedding map before and after"
    );
    for line in std::fs::read_to_string(out.join("SHA256SUMS"))
        .unwrap()
        .lines()
    {
        let (digest, file) = line.split_once("  ").unwrap();
        if file != "report.html" {
            assert!(
                dom.contains(&format!("<td>{file}</td><td><code>{digest}</code>")),
                "{file}"
            );
        }
    }
}

#[test]
fn a_run_writes_checkpoint_recipe_metrics_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("short.toml");
    std::fs::write(&recipe, SHORT).unwrap();
    let out = dir.path().join("result");
    let output = lethe_run(&recipe, &out, dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for file in [
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "recipe.toml",
        "metrics.json",
        "report.md",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("recipe.toml")).unwrap(),
        SHORT
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["method"], "lip");
    assert_eq!(metrics["steps"], 3);
    for key in ["before", "after"] {
        let target = &metrics["target"][key];
        let value = target["value"].as_f64().unwrap();
        let (low, high) = (
            target["ci_low"].as_f64().unwrap(),
            target["ci_high"].as_f64().unwrap(),
        );
        assert!(
            0.0 <= low && low <= value && value <= high && high <= 1.0,
            "target {key}: {target}"
        );
        // Every red picture of the 60 is counted, and six-odd pictures leave a wide interval.
        assert!((1..60).contains(&target["n"].as_u64().unwrap()), "{target}");
        assert!(high - low > 0.2, "{target}");
    }
    let score = metrics["avg_score"].as_f64().unwrap();
    let interval = &metrics["avg_score_interval"];
    assert!(score >= 0.0);
    assert!(
        interval["ci_low"].as_f64().unwrap() <= score + 1e-9
            && score <= interval["ci_high"].as_f64().unwrap() + 1e-9,
        "{interval}"
    );
    assert!(metrics["audit"].is_null(), "no [audit], no verdicts");
    assert!(metrics["runtime_s"].as_f64().unwrap() > 0.0);
    for phase in [
        "measure_before_s",
        "forget_images_s",
        "unlearning_s",
        "measure_after_s",
        "relearn_s",
    ] {
        assert!(metrics["timings"][phase].as_f64().unwrap() > 0.0, "{phase}");
    }
    let datasets = metrics["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 2);
    assert!(datasets[0]["other_classes_before"]["value"].is_f64());
    assert!(datasets[1]["other_classes_before"].is_null());
    assert!(metrics["relearn"]["target_after"]["value"].is_f64());
    assert!(metrics["retrieval"]["after"]["image_from_text"]["at_1"].is_f64());
    // The hashes name exactly the files: the demo checkpoint in the cache, and the written one.
    let demo = std::fs::read_dir(dir.path().join("lethe"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("demo-rn-")
        })
        .unwrap();
    let model_in = hash_folder(&demo).unwrap();
    assert_eq!(metrics["hashes"]["model_in"], model_in.as_str());
    let written: Vec<_> = ["open_clip_config.json", "open_clip_model.safetensors"]
        .iter()
        .map(|f| (f, std::fs::read(out.join(f)).unwrap()))
        .collect();
    let check = dir.path().join("check");
    std::fs::create_dir(&check).unwrap();
    for (name, bytes) in &written {
        std::fs::write(check.join(name), bytes).unwrap();
    }
    assert_eq!(
        metrics["hashes"]["model_out"],
        hash_folder(&check).unwrap().as_str()
    );
    assert_ne!(
        model_in,
        hash_folder(&check).unwrap(),
        "the weights changed"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("**red** (forgotten)"), "{report}");
    assert!(report.contains("(synthetic.png)"), "{report}");
    // Four synthetic pictures, 8 to a row: one row of tiles.
    let sheet = image::open(out.join("synthetic.png")).unwrap();
    assert!(
        sheet.width() > 4 * 64 && sheet.height() < 2 * 64,
        "{:?}",
        (sheet.width(), sheet.height())
    );

    // Every file of the result is in SHA256SUMS, which coreutils' sha256sum checks alone.
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<_> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "embedding-map.csv",
            "heatmaps.png",
            "metrics.json",
            "open_clip_config.json",
            "open_clip_model.safetensors",
            "recipe.toml",
            "report.html",
            "report.md",
            "synthetic.png"
        ]
    );
    // The map: a row per picture of the forget dataset and one per class for its prompts.
    let map = std::fs::read_to_string(out.join("embedding-map.csv")).unwrap();
    let rows: Vec<&str> = map.lines().collect();
    assert_eq!(rows[0], "kind,class,item,before_x,before_y,after_x,after_y");
    let classes = metrics["per_class"].as_array().unwrap().len();
    let prompts = rows.iter().filter(|r| r.starts_with("prompt,")).count();
    assert_eq!(prompts, classes);
    let forget_pictures: u64 = metrics["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["before"]["n"].as_u64().unwrap())
        .sum();
    assert_eq!((rows.len() - 1 - prompts) as u64, forget_pictures);
    assert_report_page_in_browser(&out, &metrics);

    let check = std::process::Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .expect("coreutils' sha256sum runs");
    assert!(check.status.success(), "{check:?}");

    // The input is untouched, the edited model opens, and an occupied folder is refused.
    assert_eq!(hash_folder(&demo).unwrap(), model_in);
    let eval = lethe(
        &[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--dataset",
            "shapes:colors?n=20",
        ],
        dir.path(),
    );
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let again = lethe_run(&recipe, &out, dir.path());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains("not empty") && stderr.contains("result"),
        "{stderr}"
    );
}

#[test]
fn bad_recipes_are_refused_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (SHORT.replace("[forget]", "[forgot]"), "forgot"),
        (
            SHORT.replace(r#"classes = ["red"]"#, r#"classes = ["crimson"]"#),
            "crimson",
        ),
        (
            SHORT.replace(r#"name = "lip""#, r#"name = "magic""#),
            "magic",
        ),
        (
            SHORT.replace("perturbations = 2", "perturbation = 2"),
            "perturbation",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let recipe = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&recipe, text).unwrap();
        let out = dir.path().join(format!("out{i}"));
        let output = lethe_run(&recipe, &out, dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "case {i} succeeded");
        assert!(
            stderr.contains(&format!("bad{i}.toml")),
            "case {i}: {stderr}"
        );
        assert!(stderr.contains(needle), "case {i}: {stderr}");
        assert!(!stderr.contains("panicked"), "case {i}: {stderr}");
        assert!(!out.exists(), "case {i} left an output folder");
    }
}

#[test]
fn a_cancelled_run_returns_no_result() {
    let recipe = Recipe::parse(&SHORT.replace("max_steps = 3", "max_steps = 50")).unwrap();
    let opened = Opened::open(recipe, SHORT.to_string()).unwrap();
    let cancel = AtomicBool::new(false);
    let mut steps = 0;
    let result = execute(&opened, &cancel, |event| {
        if let Event::Step { step, .. } = event {
            steps = *step;
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let error = result
        .err()
        .expect("a cancelled run has no result")
        .to_string();
    assert!(
        error.contains("cancelled") && error.contains("nothing was written"),
        "{error}"
    );
    assert!(steps < 50, "the run went on to step {steps}");
}

#[test]
fn the_same_recipe_and_seed_give_the_same_model_on_the_cpu() {
    let run = |seed: u64| {
        let text = SHORT.replace("seed = 5", &format!("seed = {seed}"));
        let opened = Opened::open(Recipe::parse(&text).unwrap(), text).unwrap();
        let finished = execute(&opened, &AtomicBool::new(false), |_| {}).unwrap();
        named_tensors(&finished.model, Format::OpenClip, None)
    };
    let first = run(5);
    assert!(first == run(5), "two runs with seed 5 differ");
    assert!(first != run(6), "seeds 5 and 6 gave the same model");
}

#[test]
fn real_retain_images_feed_the_retain_term_and_a_set_of_forget_classes_only_is_refused() {
    let with_retain = |spec: &str| {
        short_with_forget("retain", spec)
            .replace("max_steps = 3\n", "max_steps = 3\nretain_weight = 1.0\n")
    };
    let text = with_retain("shapes:colors?seed=13&n=20");
    let opened = Opened::open(Recipe::parse(&text).unwrap(), text).unwrap();
    let mut agreement = Vec::new();
    execute(&opened, &AtomicBool::new(false), |event| {
        if let Event::Step { report, .. } = event {
            agreement.push(report.retain_accuracy);
        }
    })
    .unwrap();
    assert_eq!(agreement.len(), 3);
    assert!(agreement.iter().all(Option::is_some), "{agreement:?}");

    // A retain folder holding nothing but the class to forget leaves nothing to keep.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("red")).unwrap();
    image::RgbImage::from_pixel(32, 32, image::Rgb([220, 20, 20]))
        .save(dir.path().join("red/one.png"))
        .unwrap();
    let spec = format!("folder:{}", dir.path().display());
    let error = failure(with_retain(&spec));
    assert!(
        error.contains(&spec) && error.contains("no readable image of a class to keep"),
        "{error}"
    );
}

#[test]
fn a_verification_set_judges_the_stop_and_one_without_the_class_is_refused() {
    let with_verify = |spec: &str| short_with_forget("verify", spec);
    // One step is enough to see what the stop is judged on.
    let text =
        with_verify("shapes:colors?seed=13&n=40").replace("max_steps = 3\n", "max_steps = 1\n");
    let opened = Opened::open(Recipe::parse(&text).unwrap(), text).unwrap();
    let finished = execute(&opened, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(finished.metrics.steps, 1);
    let pictures = lethe::data::dataset::open("shapes:colors?seed=13&n=40").unwrap();
    let red = pictures
        .items
        .iter()
        .filter(|item| pictures.classes[item.label] == "red")
        .count();
    let verification = finished
        .metrics
        .forget_images
        .verification
        .as_ref()
        .unwrap();
    assert!(red > 0);
    assert_eq!(verification.count, red, "only the pictures of red are used");
    assert!(
        lethe::eval::metrics::report_markdown(&finished.metrics).contains("judged on"),
        "the report says what the stop was judged on"
    );

    let spec = "shapes:fruits?seed=13&n=10";
    let error = failure(with_verify(spec));
    assert!(
        error.contains(spec) && error.contains("verification images") && error.contains("red"),
        "{error}"
    );
}
