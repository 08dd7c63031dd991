//! `lethe eval` and the dataset specs it reads.

mod common;

use std::process::Command;

use common::fixtures;
use lethe::data::dataset;

fn eval(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lethe"))
        .args(["eval", "--device", "cpu", "--model"])
        .arg(fixtures().join("openclip-vit"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn shapes_specs_are_deterministic_and_labelled() {
    let a = dataset::open("shapes:color-shapes?seed=5&n=40").unwrap();
    let b = dataset::open("shapes:color-shapes?seed=5&n=40").unwrap();
    assert_eq!(a.classes.len(), 100);
    assert_eq!(a.items.len(), 40);
    let labels = |d: &dataset::Dataset| d.items.iter().map(|i| i.label).collect::<Vec<_>>();
    assert_eq!(labels(&a), labels(&b));
    for item in &a.items {
        let class = &a.classes[item.label];
        let caption = item.caption.as_deref().unwrap();
        for word in class.split(' ') {
            assert!(
                caption.contains(word),
                "'{caption}' does not mention '{class}'"
            );
        }
    }
    assert_eq!(dataset::open("shapes:fruits").unwrap().classes.len(), 5);
    for (spec, needle) in [
        ("shapes:nope", "unknown Shapes subset 'nope'"),
        (
            "shapes:shapes?n=ten",
            "'n' must be a whole number from 1 to 1000000",
        ),
        ("shapes:shapes?size=3", "unknown parameter 'size'"),
        (
            "shapes:shapes?shape=blob",
            "'shape': unknown name 'blob' (available: circle, square",
        ),
        (
            "shapes:shapes?color=red&not-color=red",
            "leave no shape or no colour to draw",
        ),
        (
            "shapes:shapes?shape=star&color=red&except=red star",
            "leave no shape or no colour to draw",
        ),
        (
            "shapes:shapes?except=star",
            "'except': 'star' is not a colour and a shape",
        ),
        (
            "shapes:shapes?n=5 | shapes:colors?n=5",
            "'shapes:colors?n=5' names other classes than 'shapes:shapes?n=5'",
        ),
        (
            "shapes:fruits?shape=star",
            "'shape' picks shapes, and the fruits subset has none",
        ),
        ("pictures:x", "unknown source 'pictures'"),
        ("folder:/no/such/dir", "/no/such/dir"),
    ] {
        let err = dataset::open(spec).unwrap_err().to_string();
        assert!(err.contains(needle), "{spec}: {err}");
    }
}

/// Subgroups and their siblings are Shapes datasets with filters.
#[test]
fn shapes_filters_pick_subgroups_and_their_siblings() {
    let names = |spec: &str| -> Vec<String> {
        let d = dataset::open(spec).unwrap();
        d.items.iter().map(|i| d.classes[i.label].clone()).collect()
    };
    let subgroup = names("shapes:color-shapes?shape=star&color=red&n=40&seed=3");
    assert_eq!(subgroup.len(), 40);
    assert!(subgroup.iter().all(|c| c == "red star"), "{subgroup:?}");
    let siblings = names("shapes:color-shapes?shape=star&not-color=red,blue&n=200&seed=3");
    assert!(
        siblings
            .iter()
            .all(|c| c.ends_with(" star") && c != "red star" && c != "blue star")
    );
    let colours: std::collections::HashSet<&String> = siblings.iter().collect();
    assert_eq!(colours.len(), 8, "{colours:?}");
    let red_things = names("shapes:colors?color=red&not-shape=star&n=100&seed=3");
    assert!(red_things.iter().all(|c| c == "red"));
    let everything_else = names("shapes:color-shapes?except=red star,blue heart&n=400&seed=3");
    assert!(
        !everything_else
            .iter()
            .any(|c| c == "red star" || c == "blue heart")
    );
    assert!(everything_else.iter().any(|c| c.ends_with(" star")));
    assert!(everything_else.iter().any(|c| c.starts_with("red ")));
    let joined = dataset::open(
        "shapes:shapes?shape=star&not-color=red&n=30&seed=1 | shapes:shapes?except=red star&n=20",
    )
    .unwrap();
    assert_eq!(joined.items.len(), 50);
    let d = dataset::open("shapes:colors?color=red&not-shape=star&n=100&seed=3").unwrap();
    assert!(
        d.items
            .iter()
            .all(|i| !i.caption.as_deref().unwrap().contains("star"))
    );
}

#[test]
fn eval_json_reports_accuracy_per_dataset_and_class() {
    let output = eval(&[
        "--dataset",
        "shapes:shapes?seed=1&n=30",
        "--dataset",
        "shapes:fruits?n=10",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let datasets = json["datasets"].as_array().unwrap();
    assert_eq!(json.as_object().unwrap().len(), 1);
    assert_eq!(datasets.len(), 2);
    for (entry, n) in datasets.iter().zip([30, 10]) {
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "accuracy",
                "ci_high",
                "ci_low",
                "mistaken_for",
                "n",
                "name",
                "per_class"
            ]
        );
        assert_eq!(entry["n"], n);
        let accuracy = entry["accuracy"].as_f64().unwrap();
        let (low, high) = (
            entry["ci_low"].as_f64().unwrap(),
            entry["ci_high"].as_f64().unwrap(),
        );
        assert!(0.0 <= low && low <= accuracy && accuracy <= high && high <= 1.0);
        // Every class's accuracy comes with its pictures and interval, and the counts add up.
        let classes = entry["per_class"].as_object().unwrap();
        let pictures: u64 = classes.values().map(|c| c["n"].as_u64().unwrap()).sum();
        assert_eq!(pictures, n);
        for class in classes.values() {
            assert!(class["ci_low"].as_f64().unwrap() <= class["value"].as_f64().unwrap());
        }
        // Every class with errors names another class its images were taken for, by no more
        // images than it got wrong.
        let mistaken = entry["mistaken_for"].as_object().unwrap();
        for (name, class) in classes {
            let n = class["n"].as_u64().unwrap() as f64;
            let wrong = (n * (1.0 - class["value"].as_f64().unwrap())).round() as u64;
            match mistaken.get(name) {
                Some(taken) => {
                    assert_ne!(taken["class"].as_str().unwrap(), name);
                    let count = taken["n"].as_u64().unwrap();
                    assert!(count >= 1 && count <= wrong, "{name}: {count} of {wrong}");
                }
                None => assert_eq!(wrong, 0, "{name} has errors but no confusion"),
            }
        }
    }
    assert!(
        datasets[1]["per_class"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| ["apple", "orange", "banana", "cherry", "lemon"].contains(&k.as_str()))
    );
}

#[test]
fn folders_and_manifests_skip_unreadable_images_with_a_count() {
    let temp = tempfile::tempdir().unwrap();
    let images = fixtures().join("images");
    for (class, files) in [
        ("cat", ["a.png", "corrupt.png"]),
        ("dog", ["b.png", "gray.png"]),
    ] {
        std::fs::create_dir_all(temp.path().join(class)).unwrap();
        for file in files {
            std::fs::copy(images.join(file), temp.path().join(class).join(file)).unwrap();
        }
    }
    let spec = format!("folder:{}", temp.path().display());
    let output = eval(&["--dataset", &spec, "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["datasets"][0]["n"], 3, "the corrupt image is skipped");
    assert!(String::from_utf8_lossy(&output.stderr).contains("corrupt.png"));

    let csv = temp.path().join("list.csv");
    std::fs::write(
        &csv,
        "path,label,caption\ncat/a.png,cat,\"a cat, sitting\"\ndog/b.png,dog,\n",
    )
    .unwrap();
    let data = dataset::open(&format!("manifest:{}", csv.display())).unwrap();
    assert_eq!(data.classes, ["cat", "dog"]);
    assert_eq!(data.items[0].caption.as_deref(), Some("a cat, sitting"));
    let jsonl = temp.path().join("list.jsonl");
    std::fs::write(
        &jsonl,
        "{\"path\": \"dog/b.png\", \"label\": \"dog\"}\n\n{\"path\": \"cat/a.png\"}\n",
    )
    .unwrap();
    let err = dataset::open(&format!("manifest:{}", jsonl.display()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("list.jsonl") && err.contains("row 2: no 'label'"),
        "{err}"
    );
}
