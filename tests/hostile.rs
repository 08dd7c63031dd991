//! A hostile user's corpus: malformed recipes, dataset specs, checkpoints, pictures and
//! arguments, all generated here (nothing large is committed), against every command. Each
//! must end with a non-zero exit code (not a signal), an `error: …` line naming the culprit,
//! no panic, within a time bound and a memory bound, and leave every input byte-identical.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixtures;

/// How long one malformed input may take to be refused.
const TIME_LIMIT: Duration = Duration::from_secs(90);
/// Address space one run may use (KiB): a size of 10⁹ must be refused, not allocated.
const MEMORY_LIMIT_KIB: u64 = 12 * 1024 * 1024;

/// One malformed input: the arguments (`{in}` is the inputs folder, `{out}` a fresh output
/// folder) and the words the error line must contain.
struct Case {
    name: String,
    args: Vec<String>,
    culprit: Vec<String>,
}

fn case(name: &str, args: &[&str], culprit: &[&str]) -> Case {
    Case {
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        culprit: culprit.iter().map(|c| c.to_string()).collect(),
    }
}

/// Every regular file under `dir` with its bytes (FIFOs are never opened).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                files.insert(path.clone(), fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Runs every case against the inputs in `inputs`, checking each as the module doc says.
fn run_corpus(inputs: &Path, cases: Vec<Case>) {
    let before = snapshot(inputs);
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let out = scratch.path().join(format!("out-{i}"));
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{in}", inputs.to_str().unwrap())
                    .replace("{out}", out.to_str().unwrap())
            })
            .collect();
        if let Err(problem) = refused_cleanly(&args, &case.culprit, scratch.path()) {
            failures.push(format!("{}: {problem}", case.name));
        }
        let after = snapshot(inputs);
        if after != before {
            failures.push(format!("{}: an input changed", case.name));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs `lethe ARGS` under the time and memory bounds; `Err` says what went wrong.
fn refused_cleanly(args: &[String], culprit: &[String], home: &Path) -> Result<(), String> {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_lethe"))
        .args(args)
        .env("XDG_CACHE_HOME", home)
        .env("LETHE_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {TIME_LIMIT:?} (a hang)"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let Some(code) = status.code() else {
        return Err(format!("killed by a signal ({status}); stderr: {stderr}"));
    };
    if code == 0 {
        return Err("exit code 0: the input was accepted".into());
    }
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        return Err(format!("panicked: {stderr}"));
    }
    let Some(line) = stderr.lines().find(|l| l.starts_with("error")) else {
        return Err(format!("no error line: {stderr}"));
    };
    let lower = line.to_lowercase();
    for word in culprit {
        if !lower.contains(&word.to_lowercase()) {
            return Err(format!("'{word}' not named in: {line}"));
        }
    }
    Ok(())
}

/// A recipe that would run: the demo ViT, a few pictures, one step.
const RECIPE: &str = r#"seed = 1
[model]
path = "demo:vit"
device = "cpu"
[forget]
dataset = "shapes:colors?seed=1&n=20"
classes = ["red"]
[method]
name = "lip"
max_steps = 1
[eval]
datasets = []
relearn_steps = 0
retrieval_per_class = 0
"#;

fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// A PNG whose header declares `side`×`side` pixels and holds almost nothing.
fn png_declaring(side: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (&b"IHDR"[..], ihdr),
        (&b"IDAT"[..], vec![0x78, 0x9c, 0x03, 0x00]),
    ] {
        png.extend((data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend(&data);
        png.extend(&crc_input);
        png.extend(crc32(&crc_input).to_be_bytes());
    }
    png.extend([0, 0, 0, 0]);
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A baseline JPEG header (SOI, SOF0) declaring `side`×`side` pixels, then end of image.
fn jpeg_declaring(side: u16) -> Vec<u8> {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    jpeg.extend(side.to_be_bytes());
    jpeg.extend(side.to_be_bytes());
    jpeg.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    jpeg.extend([0xFF, 0xD9]);
    jpeg
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn malformed_recipes_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path();
    let method =
        |extra: &str| RECIPE.replace("max_steps = 1\n", &format!("max_steps = 1\n{extra}\n"));
    let mut cases = Vec::new();
    let mut recipe = |name: &str, text: String, culprit: &[&str]| {
        let file = inputs.join(format!("{name}.toml"));
        write(&file, text);
        cases.push(case(
            name,
            &["run", file.to_str().unwrap(), "--out", "{out}"],
            culprit,
        ));
    };
    for (name, setting, culprit) in [
        ("lr-nan", "learning_rate = nan", "learning_rate"),
        ("lr-inf", "learning_rate = inf", "learning_rate"),
        ("lr-negative", "learning_rate = -1.0", "learning_rate"),
        ("lr-zero", "learning_rate = 0.0", "learning_rate"),
        ("wd-nan", "weight_decay = nan", "weight_decay"),
        ("retain-weight-inf", "retain_weight = inf", "retain_weight"),
        ("batch-zero", "batch = 0", "batch"),
        ("batch-negative", "batch = -3", "batch"),
        ("batch-huge", "batch = 1000000000", "batch"),
        ("perturbations-zero", "perturbations = 0", "perturbations"),
        ("sigma-negative", "sigma = [-1.0, 2.0]", "sigma"),
        ("sigma-reversed", "sigma = [2.0, 0.1]", "sigma"),
        ("sigma-scalar", "sigma = 0.5", "sigma"),
        ("retain-batch-zero", "retain_batch = 0", "retain_batch"),
        (
            "stop-accuracy-above-one",
            "stop_accuracy = 2.0",
            "stop_accuracy",
        ),
        ("layers-reversed", "vision_layers = [8, 2]", "vision_layers"),
        (
            "synthetic-count-zero",
            "[method.synthetic]\ncount = 0",
            "count",
        ),
        (
            "synthetic-threshold-nan",
            "[method.synthetic]\nthreshold = nan",
            "threshold",
        ),
        ("unknown-setting", "learning_rat = 1e-3", "learning_rat"),
        ("wrong-type", "batch = \"eight\"", "batch"),
    ] {
        recipe(name, method(setting), &[culprit]);
    }
    for (name, a, b, culprit) in [
        ("forget-is-retain", "images", "retain", "retain"),
        ("forget-is-verify", "images", "verify", "verify"),
        ("retain-is-verify", "retain", "verify", "verify"),
        (
            "forget-is-calibration",
            "images",
            "calibration",
            "calibration",
        ),
    ] {
        let sets = format!(
            "{a} = \"shapes:colors?seed=9&n=20\"\n{b} = \"shapes:colors?seed=9&n=20\"\n[method]"
        );
        recipe(
            name,
            RECIPE.replace("[method]", &sets),
            &["[forget]", culprit],
        );
    }
    // A subgroup must be judged among the head's classes.
    recipe(
        "subgroup-outside-head",
        RECIPE.replace(
            "[method]",
            "[subgroup]\nname = \"green apple\"\ntarget = \"shapes:fruits?seed=2&n=20\"\nsiblings = \"shapes:colors?seed=3&n=20\"\n[method]",
        ),
        &["[subgroup] target", "is not a class of"],
    );
    // One edit of the recipe each: (name, text replaced, replacement, words of the error).
    let spec = "shapes:colors?seed=1&n=20";
    let edits: [(&str, &str, &str, &[&str]); 22] = [
        ("unknown-method", "\"lip\"", "\"lipp\"", &["lipp"]),
        ("no-model", "[model]\npath = \"demo:vit\"\n", "", &["model"]),
        (
            "model-missing",
            "demo:vit",
            "/no/such/model",
            &["/no/such/model"],
        ),
        ("device-unknown", "\"cpu\"", "\"tpu\"", &["tpu"]),
        ("seed-string", "seed = 1", "seed = \"one\"", &["seed"]),
        ("classes-empty", "[\"red\"]", "[]", &["classes"]),
        ("class-unknown", "[\"red\"]", "[\"mauve\"]", &["mauve"]),
        ("n-huge", "n=20", "n=1000000000000", &["'n'", "1000000"]),
        ("n-overflow", "n=20", "n=18446744073709551616", &["'n'"]),
        ("n-negative", "n=20", "n=-1", &["'n'"]),
        ("n-zero", "n=20", "n=0", &["'n'"]),
        ("spec-unknown-key", "n=20", "hue=red", &["hue"]),
        (
            "spec-unknown-subset",
            "shapes:colors",
            "shapes:cars",
            &["cars"],
        ),
        ("spec-no-scheme", spec, "colors", &["colors"]),
        ("spec-folder-empty", spec, "folder:", &["folder:", "path"]),
        ("spec-http", spec, "http://x/y", &["http"]),
        (
            "eval-huge",
            "datasets = []",
            "datasets = [\"shapes:fruits?n=99999999999\"]",
            &["fruits", "'n'"],
        ),
        (
            "max-steps-zero",
            "max_steps = 1",
            "max_steps = 0",
            &["max_steps"],
        ),
        (
            "map-perplexity-nan",
            "datasets = []",
            "datasets = []\nmap_perplexity = nan",
            &["map_perplexity"],
        ),
        (
            "map-iterations-zero",
            "datasets = []",
            "datasets = []\nmap_iterations = 0",
            &["map_iterations"],
        ),
        (
            "map-pictures-huge",
            "datasets = []",
            "datasets = []\nmap_pictures = 100000000",
            &["map_pictures"],
        ),
        (
            "not-toml",
            RECIPE,
            "\u{0}\u{1}garbage [[[",
            &["not-toml.toml"],
        ),
    ];
    for (name, from, to, culprit) in edits {
        recipe(name, RECIPE.replace(from, to), culprit);
    }
    // Sections added to the recipe, and batches built on it.
    let batch = RECIPE.replace("classes = [\"red\"]\n", "");
    let additions: [(&str, String, &[&str]); 7] = [
        (
            "audit-above-one",
            format!("{RECIPE}[audit]\ntarget_at_most = 2.0\n"),
            &["target_at_most"],
        ),
        (
            "audit-nan",
            format!("{RECIPE}[audit]\ntarget_at_most = nan\n"),
            &["target_at_most"],
        ),
        (
            "audit-string",
            format!("{RECIPE}[audit]\nretained_within = \"a lot\"\n"),
            &["retained_within"],
        ),
        (
            "batch-without-scenarios",
            format!("{RECIPE}[batch]\nmode = \"joint\"\n"),
            &["[batch]"],
        ),
        (
            "scenario-no-classes",
            format!("{batch}[[scenario]]\nclasses = []\n"),
            &["scenario", "classes"],
        ),
        (
            "scenario-twice",
            format!(
                "{batch}[[scenario]]\nclasses = [\"red\"]\n[[scenario]]\nclasses = [\"red\"]\n"
            ),
            &["red", "twice"],
        ),
        (
            "joint-two-heads",
            format!(
                "{batch}[batch]\nmode = \"joint\"\n[[scenario]]\nclasses = [\"red\"]\n[[scenario]]\nclasses = [\"apple\"]\ndataset = \"shapes:fruits\"\n"
            ),
            &["joint", "dataset"],
        ),
    ];
    for (name, text, culprit) in additions {
        recipe(name, text, culprit);
    }
    // Forget pictures from a folder holding a pipe named like a picture: refused, not read.
    let piped = inputs.join("piped");
    write(&piped.join("red/a.png"), png_declaring(8));
    make_fifo(&piped.join("red/b.png"));
    recipe(
        "images-with-fifo",
        RECIPE.replace(
            "[method]",
            &format!("images = \"folder:{}\"\n[method]", piped.display()),
        ),
        &["b.png", "regular file"],
    );
    let invalid_utf8 = inputs.join("latin1.toml");
    write(&invalid_utf8, b"seed = 1\n# caf\xe9\n");
    cases.push(case(
        "recipe-not-utf8",
        &["run", invalid_utf8.to_str().unwrap(), "--out", "{out}"],
        &["latin1.toml"],
    ));
    let folder = inputs.join("a-folder.toml");
    fs::create_dir_all(&folder).unwrap();
    cases.push(case(
        "recipe-is-folder",
        &["run", folder.to_str().unwrap(), "--out", "{out}"],
        &["a-folder.toml"],
    ));
    let fifo = inputs.join("pipe.toml");
    make_fifo(&fifo);
    cases.push(case(
        "recipe-is-fifo",
        &["run", fifo.to_str().unwrap(), "--out", "{out}"],
        &["pipe.toml", "regular file"],
    ));
    cases.push(case(
        "recipe-missing",
        &["run", "/no/such/recipe.toml", "--out", "{out}"],
        &["/no/such/recipe.toml"],
    ));
    let good = inputs.join("good.toml");
    write(&good, RECIPE);
    let full = inputs.join("full-out");
    write(&full.join("keep.txt"), "mine");
    cases.push(case(
        "out-not-empty",
        &[
            "run",
            good.to_str().unwrap(),
            "--out",
            full.to_str().unwrap(),
        ],
        &["full-out", "not empty"],
    ));
    let file_out = inputs.join("file-out");
    write(&file_out, "mine");
    cases.push(case(
        "out-is-file",
        &[
            "run",
            good.to_str().unwrap(),
            "--out",
            file_out.to_str().unwrap(),
        ],
        &["file-out"],
    ));
    cases.push(case(
        "out-unwritable",
        &["run", good.to_str().unwrap(), "--out", "/proc/lethe-out"],
        &["/proc"],
    ));
    run_corpus(inputs, cases);
}

#[test]
fn malformed_datasets_and_pictures_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path();
    let eval = |spec: &str| -> Vec<String> {
        ["eval", "--device", "cpu", "--dataset", spec]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut cases = Vec::new();
    let mut spec_case = |name: &str, spec: &str, culprit: &[&str]| {
        let args = eval(spec);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cases.push(case(name, &args, culprit));
    };
    spec_case(
        "n-trillion",
        "shapes:colors?n=1000000000000",
        &["'n'", "1000000"],
    );
    spec_case(
        "n-u64-max",
        "shapes:colors?n=18446744073709551615",
        &["'n'"],
    );
    spec_case("n-word", "shapes:colors?n=many", &["'n'", "many"]);
    spec_case("n-empty", "shapes:colors?n=", &["'n'"]);
    spec_case("seed-negative", "shapes:colors?seed=-4", &["'seed'"]);
    spec_case(
        "not-key-value",
        "shapes:colors?seed",
        &["seed", "key=value"],
    );
    spec_case("unknown-key", "shapes:colors?hue=red", &["hue", "unknown"]);
    spec_case("unknown-subset", "shapes:planes", &["planes"]);
    spec_case(
        "filter-unknown-name",
        "shapes:shapes?shape=blob",
        &["shape", "blob"],
    );
    spec_case(
        "except-not-a-pair",
        "shapes:shapes?except=red",
        &["except", "red"],
    );
    spec_case(
        "filters-leave-nothing",
        "shapes:shapes?shape=star&color=red&except=red star",
        &["no shape or no colour"],
    );
    spec_case(
        "joined-other-classes",
        "shapes:shapes?n=5 | shapes:colors?n=5",
        &["shapes:colors?n=5", "classes"],
    );
    spec_case("no-scheme", "colors", &["colors"]);
    spec_case("folder-empty-path", "folder:", &["folder:", "path"]);
    spec_case("manifest-empty-path", "manifest:", &["manifest:", "path"]);
    spec_case(
        "folder-missing",
        "folder:/no/such/folder",
        &["/no/such/folder"],
    );
    spec_case(
        "manifest-missing",
        "manifest:/no/such.csv",
        &["/no/such.csv"],
    );
    let no_classes = inputs.join("no-classes");
    write(&no_classes.join("loose.png"), png_declaring(8));
    spec_case(
        "folder-no-classes",
        &format!("folder:{}", no_classes.display()),
        &["no-classes", "class"],
    );
    let empty_classes = inputs.join("empty-classes");
    fs::create_dir_all(empty_classes.join("cat")).unwrap();
    spec_case(
        "folder-no-pictures",
        &format!("folder:{}", empty_classes.display()),
        &["empty-classes", "no pictures"],
    );
    let fifo_folder = inputs.join("fifo-folder");
    fs::create_dir_all(fifo_folder.join("cat")).unwrap();
    make_fifo(&fifo_folder.join("cat/pipe.jpg"));
    spec_case(
        "folder-fifo-picture",
        &format!("folder:{}", fifo_folder.display()),
        &["pipe.jpg", "regular file"],
    );
    let manifest_fifo = inputs.join("pipe.csv");
    make_fifo(&manifest_fifo);
    spec_case(
        "manifest-fifo",
        &format!("manifest:{}", manifest_fifo.display()),
        &["pipe.csv", "regular file"],
    );
    let header_only = inputs.join("header-only.csv");
    write(&header_only, "path,label,caption\n");
    spec_case(
        "manifest-no-rows",
        &format!("manifest:{}", header_only.display()),
        &["header-only.csv"],
    );
    let no_label = inputs.join("no-label.csv");
    write(&no_label, "path,caption\na.png,hello\n");
    spec_case(
        "manifest-no-label-column",
        &format!("manifest:{}", no_label.display()),
        &["no-label.csv", "label"],
    );
    let bad_json = inputs.join("bad.jsonl");
    write(
        &bad_json,
        "{\"path\": \"a.png\", \"label\": \"cat\"}\n{not json\n",
    );
    spec_case(
        "manifest-bad-json-line",
        &format!("manifest:{}", bad_json.display()),
        &["bad.jsonl", "line 2"],
    );
    let json_array = inputs.join("array.jsonl");
    write(&json_array, "[1, 2, 3]\n");
    spec_case(
        "manifest-json-not-object",
        &format!("manifest:{}", json_array.display()),
        &["array.jsonl", "object"],
    );
    let empty_file = inputs.join("empty.csv");
    write(&empty_file, "");
    spec_case(
        "manifest-empty-file",
        &format!("manifest:{}", empty_file.display()),
        &["empty.csv"],
    );
    // Pictures that are not what they claim, given to `classify`.
    let classify = |name: &str, image: &Path, culprit: &[&str]| {
        case(
            name,
            &[
                "classify",
                "--device",
                "cpu",
                "--image",
                image.to_str().unwrap(),
                "--labels",
                "a,b",
            ],
            culprit,
        )
    };
    let png_bomb = inputs.join("bomb.png");
    write(&png_bomb, png_declaring(20_000));
    cases.push(classify("png-bomb", &png_bomb, &["bomb.png", "20000"]));
    let jpeg_bomb = inputs.join("bomb.jpg");
    write(&jpeg_bomb, jpeg_declaring(20_000));
    cases.push(classify("jpeg-bomb", &jpeg_bomb, &["bomb.jpg"]));
    let empty_png = inputs.join("empty.png");
    write(&empty_png, "");
    cases.push(classify("empty-png", &empty_png, &["empty.png"]));
    let text_jpg = inputs.join("text.jpg");
    write(&text_jpg, "this is not a picture");
    cases.push(classify("text-as-jpeg", &text_jpg, &["text.jpg"]));
    let truncated = inputs.join("truncated.png");
    let whole = fs::read(fixtures().join("images/a.png")).unwrap();
    write(&truncated, &whole[..whole.len() / 3]);
    cases.push(classify("truncated-png", &truncated, &["truncated.png"]));
    let pipe_png = inputs.join("pipe.png");
    make_fifo(&pipe_png);
    cases.push(classify(
        "fifo-picture",
        &pipe_png,
        &["pipe.png", "regular file"],
    ));
    let folder_png = inputs.join("folder.png");
    fs::create_dir_all(&folder_png).unwrap();
    cases.push(classify("folder-picture", &folder_png, &["folder.png"]));
    cases.push(classify(
        "missing-picture",
        Path::new("/no/such.png"),
        &["/no/such.png"],
    ));
    let a = fixtures().join("images/a.png");
    cases.push(case(
        "labels-empty",
        &[
            "classify",
            "--device",
            "cpu",
            "--image",
            a.to_str().unwrap(),
            "--labels",
            "",
        ],
        &["labels"],
    ));
    run_corpus(inputs, cases);
}

#[test]
fn malformed_checkpoints_are_refused_by_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path();
    let original = fixtures().join("hf-vit");
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(original.join("config.json")).unwrap()).unwrap();
    let weights = fs::read(original.join("model.safetensors")).unwrap();
    let mut cases = Vec::new();
    let mut checkpoint =
        |name: &str, config: String, weights: Option<Vec<u8>>, culprit: &[&str]| {
            let folder = inputs.join(name);
            write(&folder.join("config.json"), config);
            if let Some(weights) = weights {
                write(&folder.join("model.safetensors"), weights);
            }
            cases.push(case(
                name,
                &[
                    "embed",
                    "--device",
                    "cpu",
                    "--model",
                    folder.to_str().unwrap(),
                    "--text",
                    "hi",
                ],
                culprit,
            ));
        };
    let with = |pointer: &str, value: serde_json::Value| {
        let mut edited = config.clone();
        *edited
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
        edited.to_string()
    };
    let w = || Some(weights.clone());
    for (name, pointer, value, culprit) in [
        (
            "vision-width-huge",
            "/vision_config/hidden_size",
            serde_json::json!(1_000_000_000u64),
            "vision width",
        ),
        (
            "vision-layers-huge",
            "/vision_config/num_hidden_layers",
            serde_json::json!(1_000_000_000u64),
            "vision layer count",
        ),
        (
            "image-size-huge",
            "/vision_config/image_size",
            serde_json::json!(1_000_000_000u64),
            "image size",
        ),
        (
            "patch-size-zero",
            "/vision_config/patch_size",
            serde_json::json!(0),
            "patch size",
        ),
        (
            "text-width-negative",
            "/text_config/hidden_size",
            serde_json::json!(-5),
            "hidden_size",
        ),
        (
            "vocab-huge",
            "/text_config/vocab_size",
            serde_json::json!(1_000_000_000u64),
            "vocabulary",
        ),
        (
            "context-huge",
            "/text_config/max_position_embeddings",
            serde_json::json!(1_000_000_000u64),
            "context length",
        ),
        (
            "heads-zero",
            "/text_config/num_attention_heads",
            serde_json::json!(0),
            "heads",
        ),
        (
            "vision-config-mistyped",
            "/vision_config",
            serde_json::json!(3),
            "vision_config",
        ),
        (
            "model-type-bert",
            "/model_type",
            serde_json::json!("bert"),
            "bert",
        ),
        (
            "embed-huge",
            "/projection_dim",
            serde_json::json!(1_000_000_000u64),
            "embedding width",
        ),
    ] {
        checkpoint(name, with(pointer, value), w(), &[name, culprit]);
    }
    let mut fat = config.clone();
    for tower in ["vision_config", "text_config"] {
        fat[tower]["hidden_size"] = serde_json::json!(16_384);
        fat[tower]["intermediate_size"] = serde_json::json!(65_536);
        fat[tower]["num_hidden_layers"] = serde_json::json!(256);
        fat[tower]["num_attention_heads"] = serde_json::json!(16);
    }
    checkpoint(
        "too-big-for-memory",
        fat.to_string(),
        w(),
        &["too-big-for-memory", "memory"],
    );
    checkpoint(
        "config-not-json",
        "{ this is not json".into(),
        w(),
        &["config.json"],
    );
    checkpoint("config-empty", String::new(), w(), &["config.json"]);
    checkpoint(
        "weights-missing",
        config.to_string(),
        None,
        &["weights-missing"],
    );
    let mut huge_header = u64::MAX.to_le_bytes().to_vec();
    huge_header.extend(b"{}");
    checkpoint(
        "safetensors-header-huge",
        config.to_string(),
        Some(huge_header),
        &["model.safetensors"],
    );
    let mut not_json = 8u64.to_le_bytes().to_vec();
    not_json.extend(b"nonsense");
    checkpoint(
        "safetensors-header-garbage",
        config.to_string(),
        Some(not_json),
        &["model.safetensors"],
    );
    checkpoint(
        "safetensors-truncated",
        config.to_string(),
        Some(weights[..weights.len() / 2].to_vec()),
        &["model.safetensors"],
    );
    checkpoint(
        "safetensors-empty",
        config.to_string(),
        Some(Vec::new()),
        &["model.safetensors"],
    );
    // open_clip's preprocessing with a zero standard deviation would divide by zero.
    let rn = fixtures().join("openclip-rn");
    let mut rn_config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(rn.join("open_clip_config.json")).unwrap())
            .unwrap();
    rn_config["preprocess_cfg"]["std"] = serde_json::json!([0.0, 0.0, 0.0]);
    let zero_std = inputs.join("zero-std");
    write(
        &zero_std.join("open_clip_config.json"),
        rn_config.to_string(),
    );
    fs::copy(
        rn.join("open_clip_model.safetensors"),
        zero_std.join("open_clip_model.safetensors"),
    )
    .unwrap();
    cases.push(case(
        "zero-std",
        &[
            "embed",
            "--device",
            "cpu",
            "--model",
            zero_std.to_str().unwrap(),
            "--text",
            "hi",
        ],
        &["zero-std", "std"],
    ));
    let empty = inputs.join("empty-folder");
    fs::create_dir_all(&empty).unwrap();
    cases.push(case(
        "empty-folder",
        &[
            "embed",
            "--device",
            "cpu",
            "--model",
            empty.to_str().unwrap(),
            "--text",
            "hi",
        ],
        &["empty-folder"],
    ));
    let pickle = inputs.join("pickle");
    write(&pickle.join("pytorch_model.bin"), "PK");
    cases.push(case(
        "pickle-only",
        &[
            "embed",
            "--device",
            "cpu",
            "--model",
            pickle.to_str().unwrap(),
            "--text",
            "hi",
        ],
        &["pytorch_model.bin"],
    ));
    let file_model = inputs.join("model-file");
    write(&file_model, "x");
    cases.push(case(
        "model-is-file",
        &[
            "embed",
            "--device",
            "cpu",
            "--model",
            file_model.to_str().unwrap(),
            "--text",
            "hi",
        ],
        &["model-file"],
    ));
    cases.push(case(
        "demo-unknown",
        &["embed", "--model", "demo:gpt", "--text", "hi"],
        &["demo:gpt"],
    ));
    run_corpus(inputs, cases);
}

#[test]
fn out_of_range_arguments_and_outputs_over_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path();
    let pictures = inputs.join("pictures");
    write(
        &pictures.join("cat/a.png"),
        fs::read(fixtures().join("images/a.png")).unwrap(),
    );
    write(
        &pictures.join("dog/b.png"),
        fs::read(fixtures().join("images/b.png")).unwrap(),
    );
    let folder = format!("folder:{}", pictures.display());
    let a_png = pictures.join("cat/a.png");
    let a_png = a_png.to_str().unwrap();
    let demo_copy = inputs.join("demo-copy");
    let cases = vec![
        case(
            "bench-batch-huge",
            &["bench", "encode", "--batch", "1000000000"],
            &["--batch", "4096"],
        ),
        case(
            "bench-batch-zero",
            &["bench", "encode", "--batch", "0"],
            &["--batch"],
        ),
        case(
            "bench-iters-word",
            &["bench", "encode", "--iters", "ten"],
            &["--iters"],
        ),
        case(
            "bench-train-batch-huge",
            &[
                "bench", "train", "--arch", "vit", "--stage", "lit", "--batch", "99999999",
            ],
            &["--batch"],
        ),
        case(
            "eval-batch-zero",
            &["eval", "--dataset", "shapes:colors", "--batch", "0"],
            &["--batch"],
        ),
        case(
            "eval-batch-negative",
            &["eval", "--dataset", "shapes:colors", "--batch", "-1"],
            &["--batch"],
        ),
        case(
            "grid-tile-huge",
            &[
                "grid",
                "--dataset",
                "shapes:colors",
                "--out",
                "{out}.png",
                "--tile",
                "1000000",
            ],
            &["--tile"],
        ),
        case(
            "grid-columns-u32",
            &[
                "grid",
                "--dataset",
                "shapes:colors",
                "--out",
                "{out}.png",
                "--columns",
                "4294967295",
            ],
            &["--columns"],
        ),
        case(
            "grid-sheet-too-big",
            &[
                "grid",
                "--dataset",
                "shapes:colors",
                "--out",
                "{out}.png",
                "--columns",
                "256",
                "--tile",
                "1024",
            ],
            &["--columns", "pixels"],
        ),
        case(
            "grid-out-over-input",
            &["grid", "--dataset", &folder, "--out", a_png],
            &["a.png", "input"],
        ),
        case(
            "grid-out-folder",
            &[
                "grid",
                "--dataset",
                "shapes:colors",
                "--out",
                pictures.to_str().unwrap(),
            ],
            &["pictures", ".png"],
        ),
        case(
            "grid-out-jpeg",
            &["grid", "--dataset", "shapes:colors", "--out", "{out}.jpg"],
            &[".png"],
        ),
        case(
            "explain-out-over-input",
            &["explain", "--image", a_png, "--out", a_png],
            &["a.png", "input"],
        ),
        case(
            "explain-opacity-nan",
            &[
                "explain",
                "--image",
                a_png,
                "--out",
                "{out}.png",
                "--opacity",
                "NaN",
            ],
            &["--opacity NaN", "from 0 to 1"],
        ),
        case(
            "explain-image-missing",
            &[
                "explain",
                "--image",
                "{out}-missing.png",
                "--out",
                "{out}.png",
            ],
            &["missing.png", "no such image file"],
        ),
        case(
            "device-unknown",
            &["eval", "--dataset", "shapes:colors", "--device", "tpu"],
            &["tpu"],
        ),
        case(
            "unknown-command",
            &["forget-everything"],
            &["forget-everything"],
        ),
        case(
            "unknown-flag",
            &["eval", "--dataset", "shapes:colors", "--fast"],
            &["--fast"],
        ),
        case(
            "train-demo-steps-word",
            &[
                "train-demo",
                "--arch",
                "vit",
                "--out",
                "{out}",
                "--attributes-steps",
                "lots",
            ],
            &["--attributes-steps"],
        ),
        case(
            "train-demo-lr-nan",
            &[
                "train-demo",
                "--arch",
                "vit",
                "--out",
                "{out}",
                "--lit-lr",
                "nan",
            ],
            &["lit"],
        ),
        case(
            "train-demo-batch-zero",
            &[
                "train-demo",
                "--arch",
                "rn",
                "--out",
                "{out}",
                "--attributes-batch",
                "0",
            ],
            &["attributes"],
        ),
        case(
            "train-demo-out-unwritable",
            &["train-demo", "--arch", "vit", "--out", "/proc/lethe-demo"],
            &["--out", "/proc/lethe-demo"],
        ),
        case(
            "train-demo-init-is-out",
            &[
                "train-demo",
                "--arch",
                "vit",
                "--init",
                demo_copy.to_str().unwrap(),
                "--out",
                demo_copy.to_str().unwrap(),
            ],
            &["demo-copy", "input"],
        ),
        case(
            "train-demo-out-inside-init",
            &[
                "train-demo",
                "--arch",
                "vit",
                "--init",
                demo_copy.to_str().unwrap(),
                "--out",
                demo_copy.join("inner").to_str().unwrap(),
            ],
            &["inner", "input"],
        ),
    ];
    // The demo checkpoint as a folder of the inputs, to be given as --init.
    let demo = lethe::demo::resolve_model("demo:vit").unwrap();
    fs::create_dir_all(&demo_copy).unwrap();
    for entry in fs::read_dir(demo).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, demo_copy.join(path.file_name().unwrap())).unwrap();
    }
    run_corpus(inputs, cases);
}

#[test]
fn an_argument_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let output = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["eval", "--dataset"])
        .arg(std::ffi::OsStr::from_bytes(b"shapes:\xff\xfe"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && output.status.code().is_some());
    let line = stderr.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("error") && line.contains("--dataset"),
        "{stderr}"
    );
}

/// Starts `lethe run RECIPE --out OUT`, kills it (SIGKILL) once `kill_when` holds, and
/// returns whether it was killed (rather than finishing first).
fn run_and_kill(recipe: &Path, out: &Path, home: &Path, kill_when: impl Fn() -> bool) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args([
            "run",
            recipe.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("XDG_CACHE_HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < TIME_LIMIT {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if kill_when() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the run neither finished nor reached the moment to kill it");
}

#[test]
fn a_run_killed_mid_way_or_mid_write_leaves_no_result_and_the_next_run_works() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    let recipe = inputs.join("recipe.toml");
    write(&recipe, RECIPE.replace("max_steps = 1", "max_steps = 3"));
    let before = snapshot(&inputs);
    let results = dir.path().join("results");
    fs::create_dir_all(&results).unwrap();
    let out = results.join("out");
    // While the result folder is being assembled (the checkpoint export and the reports).
    let staging = || {
        fs::read_dir(&results).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".out.partial")
        })
    };
    assert!(
        run_and_kill(&recipe, &out, dir.path(), staging),
        "the run finished before its write could be interrupted"
    );
    assert!(
        !out.exists(),
        "a killed write left a result under its final name"
    );
    // Early, while it is opening the model and unlearning.
    let started = Instant::now();
    run_and_kill(&recipe, &out, dir.path(), || {
        started.elapsed() > Duration::from_secs(2)
    });
    assert!(!out.exists());
    assert_eq!(snapshot(&inputs), before, "the recipe changed");
    let status = Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args([
            "run",
            recipe.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("XDG_CACHE_HOME", dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for file in [
        "metrics.json",
        "report.md",
        "recipe.toml",
        "open_clip_config.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
}

#[test]
fn a_workspace_save_killed_mid_write_leaves_one_whole_workspace() {
    use lethe::app::workspace::Workspace;
    let small = Workspace {
        zoom: 1.5,
        ..Workspace::default()
    };
    // Large enough that writing it takes a while.
    let mut large = Workspace::default();
    large.sets.forget = (0..200_000).collect();
    if let Some(path) = std::env::var_os("LETHE_SAVE_LOOP") {
        // The child process: save the two workspaces in turn until it is killed.
        let path = PathBuf::from(path);
        loop {
            small.save(&path).unwrap();
            large.save(&path).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workspace.toml");
    small.save(&path).unwrap();
    for attempt in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_workspace_save_killed_mid_write_leaves_one_whole_workspace",
            ])
            .env("LETHE_SAVE_LOOP", &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed the moment its half-written file appears beside the workspace.
        let staging = format!(".workspace.toml.partial-{}", child.id());
        let start = Instant::now();
        while !dir.path().join(&staging).exists() && start.elapsed() < TIME_LIMIT {
            std::hint::spin_loop();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let reopened = Workspace::load(&path).expect("the workspace file is whole");
        assert!(reopened == small || reopened == large, "attempt {attempt}");
        for entry in fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                name == "workspace.toml" || name.starts_with(".workspace.toml.partial-"),
                "{name}"
            );
        }
    }
}
