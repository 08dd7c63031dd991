//! The record of an unlearning run: `metrics.json` for machines and `report.md` for people, both
//! built from the before and after [`Snapshot`]s so they always agree.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::audit::{Audit, AuditSection, Check};
use super::interval::Estimate;
use super::relearn::Relearn;
use super::retrieval::AtRanks;
use super::score::{
    BeforeAfter, PairedHits, RESAMPLES, avg_score, avg_score_interval, subgroup_score,
};
use super::snapshot::{Retrieval, Snapshot};

/// An accuracy before and after, as written to `metrics.json` (each with `value`, `n`,
/// `ci_low` and `ci_high`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Change {
    /// Before unlearning.
    pub before: Estimate,
    /// After unlearning.
    pub after: Estimate,
}

/// The Avg Score's 95% bootstrap interval over pictures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ScoreInterval {
    /// Lower end.
    pub ci_low: f64,
    /// Upper end.
    pub ci_high: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
}

/// One dataset's row of the before/after table.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetRow {
    /// The dataset spec.
    pub name: String,
    /// Accuracy over all its images, before.
    pub before: Estimate,
    /// Accuracy over all its images, after.
    pub after: Estimate,
    /// Accuracy on the classes not forgotten (forget dataset only), before.
    pub other_classes_before: Option<Estimate>,
    /// The same, after.
    pub other_classes_after: Option<Estimate>,
}

/// Target accuracy under one template, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateRow {
    /// The template.
    pub template: String,
    /// Before.
    pub before: Option<Estimate>,
    /// After.
    pub after: Option<Estimate>,
}

/// One class of the forget dataset, before and after.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    /// Class name.
    pub class: String,
    /// Whether it was to be forgotten.
    pub forgotten: bool,
    /// Accuracy before.
    pub before: Estimate,
    /// Accuracy after.
    pub after: Estimate,
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
    /// Accuracy on those pictures before and after, classified among the forget dataset's
    /// classes (filled in when the run is measured).
    pub accuracy: Option<Change>,
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
    /// Its 95% bootstrap interval over pictures (`None` without target pictures).
    pub avg_score_interval: Option<ScoreInterval>,
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
    /// The recipe's `[audit]` checks and their verdicts, when it has that section.
    pub audit: Option<Audit>,
    /// The subgroup scenario's measures and Score, when the run forgot a subgroup.
    pub subgroup: Option<SubgroupMetrics>,
    /// What the method did that a reader should know (a stage skipped, a setting chosen).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A subgroup scenario as the subgroup paper reports it.
#[derive(Clone, Debug, Serialize)]
pub struct SubgroupMetrics {
    /// What the subgroup is called.
    pub name: String,
    /// Target ↓: the subgroup's pictures.
    pub target: NamedChange,
    /// Retain ↑: the sibling subgroups' pictures.
    pub retain: NamedChange,
    /// All ↑: the whole forget dataset.
    pub all: NamedChange,
    /// Each other evaluation dataset ↑.
    pub others: Vec<NamedChange>,
    /// The subgroup under other heads ↓.
    pub also_forgotten: Vec<NamedChange>,
    /// `100 × mean(1 − AF_target/BF_target, min(1, AF_x/BF_x) for x in retain, all, others)`.
    pub score: f64,
}

/// One measured set's accuracy before and after, with its dataset spec.
#[derive(Clone, Debug, Serialize)]
pub struct NamedChange {
    /// The dataset spec.
    pub name: String,
    /// Before and after.
    #[serde(flatten)]
    pub change: Change,
}

impl NamedChange {
    fn of(before: &super::DatasetAccuracy, after: &super::DatasetAccuracy) -> Self {
        Self {
            name: before.name.clone(),
            change: Change {
                before: before.estimate(),
                after: after.estimate(),
            },
        }
    }

    fn values(&self) -> BeforeAfter {
        BeforeAfter {
            before: self.change.before.value,
            after: self.change.after.value,
        }
    }
}

/// The subgroup measures of two snapshots (`None` unless both measured a subgroup).
fn subgroup_metrics(name: &str, before: &Snapshot, after: &Snapshot) -> Option<SubgroupMetrics> {
    let (b, a) = (before.subgroup.as_ref()?, after.subgroup.as_ref()?);
    let target = NamedChange::of(&b.target, &a.target);
    let retain = NamedChange::of(&b.siblings, &a.siblings);
    let all = NamedChange::of(&before.head, &after.head);
    let others: Vec<NamedChange> = before
        .others
        .iter()
        .zip(&after.others)
        .map(|(b, a)| NamedChange::of(b, a))
        .collect();
    let kept: Vec<BeforeAfter> = [&retain, &all]
        .into_iter()
        .chain(&others)
        .map(NamedChange::values)
        .collect();
    Some(SubgroupMetrics {
        name: name.to_string(),
        score: subgroup_score(target.values(), &kept),
        target,
        retain,
        all,
        others,
        also_forgotten: b
            .also_forgotten
            .iter()
            .zip(&a.also_forgotten)
            .map(|(b, a)| NamedChange::of(b, a))
            .collect(),
    })
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
    /// Their indices among the forget dataset's classes (the labels of its pictures).
    pub target_labels: Vec<usize>,
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
    /// The subgroup's name, when the run forgot a subgroup.
    pub subgroup: Option<String>,
    /// The method's notes on the run.
    pub notes: Vec<String>,
}

/// Whether each picture of `hits` (label, correct) whose label `include` accepts was
/// classified correctly, in order.
fn hits_where(hits: &[(usize, bool)], include: impl Fn(usize) -> bool) -> Vec<bool> {
    hits.iter()
        .filter(|(label, _)| include(*label))
        .map(|&(_, hit)| hit)
        .collect()
}

/// Combines the two snapshots into the run's metrics, judged by `audit` when the recipe has
/// that section.
pub fn metrics(
    before: &Snapshot,
    after: &Snapshot,
    facts: RunFacts,
    audit: Option<&AuditSection>,
) -> Metrics {
    let empty = Estimate::from_counts(0, 0);
    let target = Change {
        before: before.target.unwrap_or(empty),
        after: after.target.unwrap_or(empty),
    };
    let mut datasets = vec![DatasetRow {
        name: before.head.name.clone(),
        before: before.head.estimate(),
        after: after.head.estimate(),
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
                before: b.estimate(),
                after: a.estimate(),
                other_classes_before: None,
                other_classes_after: None,
            }),
    );
    let ba = |before: f64, after: f64| BeforeAfter { before, after };
    let kept: Vec<BeforeAfter> = before
        .other_classes
        .zip(after.other_classes)
        .map(|(b, a)| ba(b.value, a.value))
        .into_iter()
        .chain(
            before
                .others
                .iter()
                .zip(&after.others)
                .map(|(b, a)| ba(b.accuracy, a.accuracy)),
        )
        .collect();
    let targets = &facts.target_labels;
    let paired = |b: &[(usize, bool)], a: &[(usize, bool)], forgotten: bool| PairedHits {
        before: hits_where(b, |label| targets.contains(&label) == forgotten),
        after: hits_where(a, |label| targets.contains(&label) == forgotten),
    };
    let kept_hits: Vec<PairedHits> =
        std::iter::once(paired(&before.head.hits, &after.head.hits, false))
            .chain(
                before
                    .others
                    .iter()
                    .zip(&after.others)
                    .map(|(b, a)| PairedHits {
                        before: hits_where(&b.hits, |_| true),
                        after: hits_where(&a.hits, |_| true),
                    }),
            )
            .collect();
    let avg_score_interval = avg_score_interval(
        &paired(&before.head.hits, &after.head.hits, true),
        &kept_hits,
        facts.seed,
    )
    .map(|(ci_low, ci_high)| ScoreInterval {
        ci_low,
        ci_high,
        resamples: RESAMPLES,
    });
    let per_class = before
        .head
        .per_class
        .keys()
        .map(|class| ClassRow {
            class: class.clone(),
            forgotten: facts.classes.contains(class),
            before: before.head.class_estimate(class),
            after: after.head.class_estimate(class),
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
    let mut forget_images = facts.forget_images;
    if let Some(verification) = &mut forget_images.verification {
        verification.accuracy = before
            .verification
            .zip(after.verification)
            .map(|(before, after)| Change { before, after });
    }
    let mut metrics = Metrics {
        method: facts.method,
        seed: facts.seed,
        model: facts.model,
        classes: facts.classes,
        avg_score: avg_score(ba(target.before.value, target.after.value), &kept),
        avg_score_interval,
        target,
        runtime_s: facts.timings.forget_images_s + facts.timings.unlearning_s,
        timings: facts.timings,
        steps: facts.steps,
        ending: facts.ending,
        forget_images,
        datasets,
        per_class,
        templates,
        retrieval: before
            .retrieval
            .zip(after.retrieval)
            .map(|(before, after)| RetrievalChange { before, after }),
        relearn: facts.relearn,
        hashes: facts.hashes,
        audit: None,
        subgroup: facts
            .subgroup
            .and_then(|name| subgroup_metrics(&name, before, after)),
        notes: facts.notes,
    };
    metrics.audit = audit.map(|section| section.judge(&metrics));
    metrics
}

/// The subgroup paper's table: one row per measured set, and the Score.
fn subgroup_section(w: &mut String, s: &SubgroupMetrics) {
    let _ = writeln!(
        w,
        "## Subgroup: {}\n\n**Score {:.1}** (0–100, higher is better: the share of the subgroup \
         forgotten, averaged with the share kept of every other row).\n",
        s.name, s.score
    );
    let _ = writeln!(
        w,
        "| measure | pictures | before | after |\n|---|---|---|---|"
    );
    let mut row = |measure: &str, c: &NamedChange| {
        let _ = writeln!(
            w,
            "| {measure} | `{}` | {} | {} |",
            c.name,
            estimate(Some(&c.change.before)),
            estimate(Some(&c.change.after))
        );
    };
    row("Target ↓", &s.target);
    for c in &s.also_forgotten {
        row("Target, other head ↓", c);
    }
    row("Retain (siblings) ↑", &s.retain);
    row("All ↑", &s.all);
    for c in &s.others {
        row("Other dataset ↑", c);
    }
    let _ = writeln!(w);
}

/// An accuracy with its interval and sample size, e.g. `4.2% [2.3–7.5] n=300`.
pub fn estimate(value: Option<&Estimate>) -> String {
    value.map_or("–".into(), |e| {
        format!(
            "{:.1}% [{:.1}–{:.1}] n={}",
            e.value * 100.0,
            e.ci_low * 100.0,
            e.ci_high * 100.0,
            e.n
        )
    })
}

fn at_ranks(p: &AtRanks) -> String {
    format!("{:.2} / {:.2} / {:.2}", p.at_1, p.at_5, p.at_10)
}

/// Writes a Markdown section `heading` holding a table with `columns` and `rows`.
pub fn table(
    w: &mut String,
    heading: &str,
    columns: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) {
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
    if let Some(audit) = &m.audit {
        audit_section(w, audit);
    }
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
            "The stop was judged on {} real pictures of the class from `{}`, never trained on{}.\n",
            verification.count,
            verification.source,
            verification
                .accuracy
                .as_ref()
                .map_or(String::new(), |a| format!(
                    "; their accuracy went {} → {}",
                    estimate(Some(&a.before)),
                    estimate(Some(&a.after))
                ))
        );
    }
    if let Some(subgroup) = &m.subgroup {
        subgroup_section(w, subgroup);
    }
    if !m.notes.is_empty() {
        let _ = writeln!(w, "## What the method did\n");
        for note in &m.notes {
            let _ = writeln!(w, "- {note}");
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "**Target accuracy {} → {}**, Avg Score **{:.3}**{} (lower is better).",
        estimate(Some(&m.target.before)),
        estimate(Some(&m.target.after)),
        m.avg_score,
        m.avg_score_interval.map_or(String::new(), |i| format!(
            " [{:.3}–{:.3}]",
            i.ci_low, i.ci_high
        ))
    );
    let _ = writeln!(
        w,
        "\nEvery accuracy is given with its 95% Wilson interval in brackets and the number of \
         pictures it was measured on; the Avg Score's interval is a bootstrap over pictures."
    );
    let datasets = m.datasets.iter().map(|d| {
        vec![
            format!("`{}`", d.name),
            estimate(Some(&d.before)),
            estimate(Some(&d.after)),
            estimate(d.other_classes_before.as_ref()),
            estimate(d.other_classes_after.as_ref()),
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
        vec![name, estimate(Some(&c.before)), estimate(Some(&c.after))]
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
            estimate(t.before.as_ref()),
            estimate(t.after.as_ref()),
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
            estimate(Some(&r.target_before)),
            estimate(Some(&r.target_after)),
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

/// A check as table cells: check, subject, criterion, measured with interval, n, verdict.
pub fn check_cells(c: &Check) -> Vec<String> {
    let observed = if c.check == "retained" {
        format!(
            "{:+.1} points [{:+.1}, {:+.1}]",
            c.value * 100.0,
            c.ci_low * 100.0,
            c.ci_high * 100.0
        )
    } else {
        format!(
            "{:.1}% [{:.1}–{:.1}]",
            c.value * 100.0,
            c.ci_low * 100.0,
            c.ci_high * 100.0
        )
    };
    let verdict = match c.pictures_to_decide {
        Some(n) => format!("{} (about {n} pictures would decide)", c.verdict.word()),
        None => c.verdict.word().to_string(),
    };
    vec![
        c.check.clone(),
        format!("`{}`", c.subject),
        c.criterion.clone(),
        observed,
        c.n.to_string(),
        format!("**{verdict}**"),
    ]
}

/// The verdicts first: what an auditor signs.
fn audit_section(w: &mut String, audit: &Audit) {
    let _ = writeln!(
        w,
        "## Verdict: {}\n\nEach check passes when its whole 95% interval meets the criterion, \
         fails when the whole interval misses it, and is inconclusive when the interval \
         straddles the threshold.",
        audit.verdict.word()
    );
    let rows = audit.checks.iter().map(check_cells);
    table(
        w,
        "Checks",
        &["check", "on", "criterion", "measured", "n", "verdict"],
        rows,
    );
    let _ = writeln!(w);
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

/// SHA-256 of a file's bytes, as lowercase hex, read in a stream.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
