//! The record of an unlearning run: `metrics.json` for machines and `report.md` for people, both
//! built from the before and after [`Snapshot`]s so they always agree.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::relearn::Relearn;
use super::retrieval::AtRanks;
use super::score::{BeforeAfter, avg_score};
use super::snapshot::{Retrieval, Snapshot};

/// An accuracy before and after, as written to `metrics.json`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Change {
    /// Before unlearning.
    pub before: f64,
    /// After unlearning.
    pub after: f64,
}

/// One dataset's row of the before/after table.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetRow {
    /// The dataset spec.
    pub name: String,
    /// Accuracy over all its images, before.
    pub before: f64,
    /// Accuracy over all its images, after.
    pub after: f64,
    /// Accuracy on the classes not forgotten (forget dataset only), before.
    pub other_classes_before: Option<f64>,
    /// The same, after.
    pub other_classes_after: Option<f64>,
}

/// Target accuracy under one template, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateRow {
    /// The template.
    pub template: String,
    /// Before.
    pub before: Option<f64>,
    /// After.
    pub after: Option<f64>,
}

/// One class of the forget dataset, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    /// Class name.
    pub class: String,
    /// Whether it was to be forgotten.
    pub forgotten: bool,
    /// Accuracy before.
    pub before: f64,
    /// Accuracy after.
    pub after: f64,
}

/// Where the forget images came from.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetImages {
    /// `synthetic` or the dataset spec of the real images.
    pub source: String,
    /// How many.
    pub count: usize,
    /// Mean target probability of synthetic images under the original model.
    pub mean_probability: Option<f64>,
    /// The real pictures the stop was judged on, when the recipe names a verification set.
    pub verification: Option<Verification>,
}

/// The verification set: real pictures of the forgotten classes, never trained on, on which
/// the stop was judged.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The dataset spec.
    pub source: String,
    /// Pictures of the forgotten classes in it.
    pub count: usize,
}

/// SHA-256 digests tying the numbers to exact files.
#[derive(Clone, Debug, Serialize)]
pub struct Hashes {
    /// The input checkpoint folder.
    pub model_in: String,
    /// The written checkpoint folder.
    pub model_out: String,
    /// The recipe text.
    pub recipe: String,
}

/// Where the run's time went, in seconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timings {
    /// Measuring the model before unlearning.
    pub measure_before_s: f64,
    /// Making synthetic forget images (or reading real ones).
    pub forget_images_s: f64,
    /// The method's iterations.
    pub unlearning_s: f64,
    /// Measuring the edited model.
    pub measure_after_s: f64,
    /// The relearning test.
    pub relearn_s: f64,
}

/// Everything `metrics.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// Method name.
    pub method: String,
    /// The run's seed.
    pub seed: u64,
    /// The model spec the run started from.
    pub model: String,
    /// The forgotten classes.
    pub classes: Vec<String>,
    /// Accuracy on the forgotten classes' images.
    pub target: Change,
    /// The Lip paper's Avg Score (lower is better).
    pub avg_score: f64,
    /// Wall-clock seconds of the unlearning itself (image synthesis included).
    pub runtime_s: f64,
    /// Time per phase of the run.
    pub timings: Timings,
    /// Method iterations.
    pub steps: usize,
    /// How the method ended (`finished`, `cancelled`, ...).
    pub ending: String,
    /// The forget images.
    pub forget_images: ForgetImages,
    /// The forget dataset first, then every other evaluation dataset.
    pub datasets: Vec<DatasetRow>,
    /// Each class of the forget dataset.
    pub per_class: Vec<ClassRow>,
    /// Target accuracy under single templates.
    pub templates: Vec<TemplateRow>,
    /// Retrieval precision for the forgotten classes (lower after is better for
    /// image-from-text).
    pub retrieval: Option<RetrievalChange>,
    /// The relearning test on the edited model.
    pub relearn: Option<Relearn>,
    /// File digests.
    pub hashes: Hashes,
}

/// Retrieval before and after.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RetrievalChange {
    /// Before.
    pub before: Retrieval,
    /// After.
    pub after: Retrieval,
}

/// What the run was, beside the measurements.
pub struct RunFacts {
    /// Method name.
    pub method: String,
    /// Seed.
    pub seed: u64,
    /// Model spec.
    pub model: String,
    /// Forgotten class names.
    pub classes: Vec<String>,
    /// Time per phase.
    pub timings: Timings,
    /// Iterations.
    pub steps: usize,
    /// How it ended.
    pub ending: String,
    /// Forget images.
    pub forget_images: ForgetImages,
    /// Relearning test.
    pub relearn: Option<Relearn>,
    /// Digests.
    pub hashes: Hashes,
}

/// Combines the two snapshots into the run's metrics.
pub fn metrics(before: &Snapshot, after: &Snapshot, facts: RunFacts) -> Metrics {
    let target = Change {
        before: before.target.unwrap_or(0.0),
        after: after.target.unwrap_or(0.0),
    };
    let mut datasets = vec![DatasetRow {
        name: before.head.name.clone(),
        before: before.head.accuracy,
        after: after.head.accuracy,
        other_classes_before: before.other_classes,
        other_classes_after: after.other_classes,
    }];
    datasets.extend(
        before
            .others
            .iter()
            .zip(&after.others)
            .map(|(b, a)| DatasetRow {
                name: b.name.clone(),
                before: b.accuracy,
                after: a.accuracy,
                other_classes_before: None,
                other_classes_after: None,
            }),
    );
    let ba = |before: f64, after: f64| BeforeAfter { before, after };
    let kept: Vec<BeforeAfter> = before
        .other_classes
        .zip(after.other_classes)
        .map(|(b, a)| ba(b, a))
        .into_iter()
        .chain(
            before
                .others
                .iter()
                .zip(&after.others)
                .map(|(b, a)| ba(b.accuracy, a.accuracy)),
        )
        .collect();
    let per_class = before
        .head
        .per_class
        .iter()
        .map(|(class, &b)| ClassRow {
            class: class.clone(),
            forgotten: facts.classes.contains(class),
            before: b,
            after: after.head.per_class.get(class).copied().unwrap_or(0.0),
        })
        .collect();
    let templates = before
        .templates
        .iter()
        .zip(&after.templates)
        .map(|(b, a)| TemplateRow {
            template: b.template.clone(),
            before: b.target,
            after: a.target,
        })
        .collect();
    Metrics {
        method: facts.method,
        seed: facts.seed,
        model: facts.model,
        classes: facts.classes,
        avg_score: avg_score(ba(target.before, target.after), &kept),
        target,
        runtime_s: facts.timings.forget_images_s + facts.timings.unlearning_s,
        timings: facts.timings,
        steps: facts.steps,
        ending: facts.ending,
        forget_images: facts.forget_images,
        datasets,
        per_class,
        templates,
        retrieval: before
            .retrieval
            .zip(after.retrieval)
            .map(|(before, after)| RetrievalChange { before, after }),
        relearn: facts.relearn,
        hashes: facts.hashes,
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn at_ranks(p: &AtRanks) -> String {
    format!("{:.2} / {:.2} / {:.2}", p.at_1, p.at_5, p.at_10)
}

/// Writes a Markdown section `heading` holding a table with `columns` and `rows`.
fn table(w: &mut String, heading: &str, columns: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let _ = writeln!(
        w,
        "\n## {heading}\n\n| {} |\n|{}",
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
    for row in rows {
        let _ = writeln!(w, "| {} |", row.join(" | "));
    }
}

/// The run as a Markdown report a person can read without the JSON.
pub fn report_markdown(m: &Metrics) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# Unlearning report: {} forgets {}\n",
        m.method,
        m.classes.join(", ")
    );
    let _ = writeln!(
        w,
        "Model `{}`, seed {}, {} steps in {:.1} s, ended: {}.\n",
        m.model, m.seed, m.steps, m.runtime_s, m.ending
    );
    let _ = writeln!(
        w,
        "Forget images: {} ({}{}).\n",
        m.forget_images.count,
        m.forget_images.source,
        m.forget_images
            .mean_probability
            .map_or(String::new(), |p| format!(
                ", mean target probability {p:.2}"
            ))
    );
    if let Some(verification) = &m.forget_images.verification {
        let _ = writeln!(
            w,
            "The stop was judged on {} real pictures of the class from `{}`, never trained on.\n",
            verification.count, verification.source
        );
    }
    let _ = writeln!(
        w,
        "**Target accuracy {} → {}**, Avg Score **{:.3}** (lower is better).",
        percent(Some(m.target.before)),
        percent(Some(m.target.after)),
        m.avg_score
    );
    let datasets = m.datasets.iter().map(|d| {
        vec![
            format!("`{}`", d.name),
            percent(Some(d.before)),
            percent(Some(d.after)),
            percent(d.other_classes_before),
            percent(d.other_classes_after),
        ]
    });
    table(
        w,
        "Datasets",
        &[
            "dataset",
            "before",
            "after",
            "other classes before",
            "other classes after",
        ],
        datasets,
    );
    let classes = m.per_class.iter().map(|c| {
        let name = if c.forgotten {
            format!("**{}** (forgotten)", c.class)
        } else {
            c.class.clone()
        };
        vec![name, percent(Some(c.before)), percent(Some(c.after))]
    });
    table(
        w,
        "Classes of the forget dataset",
        &["class", "before", "after"],
        classes,
    );
    let templates = m.templates.iter().map(|t| {
        vec![
            format!("`{}`", t.template),
            percent(t.before),
            percent(t.after),
        ]
    });
    table(
        w,
        "Target accuracy per prompt template",
        &["template", "before", "after"],
        templates,
    );
    if let Some(r) = &m.retrieval {
        let rows = [
            (
                "image from text",
                r.before.image_from_text,
                r.after.image_from_text,
            ),
            (
                "image from image",
                r.before.image_from_image,
                r.after.image_from_image,
            ),
        ]
        .into_iter()
        .map(|(query, before, after)| vec![query.to_string(), at_ranks(&before), at_ranks(&after)]);
        table(
            w,
            "Retrieval of the forgotten classes (precision @1 / @5 / @10)",
            &["query", "before", "after"],
            rows,
        );
        if let Some((before, after)) = r.before.pairs.zip(r.after.pairs) {
            let rows = [
                (
                    "forget",
                    "picture → caption",
                    before.forget.image_to_text,
                    after.forget.image_to_text,
                    before.forget.pairs,
                ),
                (
                    "forget",
                    "caption → picture",
                    before.forget.text_to_image,
                    after.forget.text_to_image,
                    before.forget.pairs,
                ),
                (
                    "retain",
                    "picture → caption",
                    before.retain.image_to_text,
                    after.retain.image_to_text,
                    before.retain.pairs,
                ),
                (
                    "retain",
                    "caption → picture",
                    before.retain.text_to_image,
                    after.retain.text_to_image,
                    before.retain.pairs,
                ),
            ]
            .into_iter()
            .map(|(set, query, before, after, pairs)| {
                vec![
                    set.to_string(),
                    query.to_string(),
                    pairs.to_string(),
                    at_ranks(&before),
                    at_ranks(&after),
                ]
            });
            table(
                w,
                "Image–caption pair retrieval (recall @1 / @5 / @10)",
                &["pairs", "query", "n", "before", "after"],
                rows,
            );
        }
    }
    if let Some(r) = &m.relearn {
        let _ = writeln!(
            w,
            "\n## Relearning test\n\n{} fine-tuning steps on {} images of the forgotten classes: held-out target accuracy {} → {} ({} images).",
            r.steps,
            r.train_images,
            percent(Some(r.target_before)),
            percent(Some(r.target_after)),
            r.test_images
        );
    }
    let _ = writeln!(
        w,
        "\n## Provenance\n\n- model in: `{}`\n- model out: `{}`\n- recipe: `{}`",
        m.hashes.model_in, m.hashes.model_out, m.hashes.recipe
    );
    out
}

/// SHA-256 of a folder's regular files, in name order, each as its name then its bytes: one
/// digest for a whole checkpoint.
pub fn hash_folder(dir: &Path) -> std::io::Result<String> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.as_encoded_bytes());
        std::io::copy(&mut fs::File::open(dir.join(&name))?, &mut hasher)?;
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of bytes, as lowercase hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
