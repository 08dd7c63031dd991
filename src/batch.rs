//! Batches of concepts: a moderator's work is a list, so a recipe with `[[scenario]]` entries
//! forgets several concepts in one go. *Sequential* batches forget one concept after another
//! on the same model, each run starting from the previous run's checkpoint; every run measures
//! the whole head, so each concept is read again after every step (does forgetting B bring A
//! back?). *Joint* batches forget every concept in one run. Either way the result folder holds
//! one row per concept and per check, and the verdicts gate the exit code as a single run's do.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::eval::audit::{AuditSection, Check, Limit, Verdict, at_most, within};
use crate::eval::interval::Estimate;
use crate::eval::manifest::write_sha256sums;
use crate::eval::metrics::{Change, ClassRow, check_cells, estimate, table};
use crate::recipe::{BatchMode, Recipe};
use crate::unlearn::job::Event;
use crate::workflow::{Opened, check_output, execute, fill_result, write_report_page};

/// The columns of a batch's table of concepts, in the report and the app.
pub const CONCEPT_COLUMNS: [&str; 7] = [
    "concept",
    "classes",
    "before its run",
    "after its run",
    "after the batch",
    "Avg Score",
    "verdict",
];

/// The batch's own record, beside the runs' `metrics.json`.
pub const BATCH_JSON: &str = "batch.json";

/// One concept of a batch.
#[derive(Clone, Debug, Serialize)]
pub struct ConceptRow {
    /// Its name.
    pub name: String,
    /// Its classes.
    pub classes: Vec<String>,
    /// Its classes' accuracy before and after its own run (sequential: an earlier run may
    /// already have moved it) or the joint run.
    pub target: Option<Change>,
    /// Its classes' accuracy after the whole batch.
    pub target_at_end: Option<Estimate>,
    /// Avg Score of its own run (sequential batches).
    pub avg_score: Option<f64>,
    /// Its own run's result folder, relative to the batch's (sequential batches).
    pub folder: Option<String>,
    /// Its checks: its run's audit and, in a sequential batch, whether it is still forgotten
    /// after the last run.
    pub checks: Vec<Check>,
    /// The checks' combined verdict (`None` without criteria).
    pub verdict: Option<Verdict>,
}

/// Every concept's accuracy at one point of the batch.
#[derive(Clone, Debug, Serialize)]
pub struct CrossRow {
    /// `before`, or the concept whose run had just ended.
    pub after: String,
    /// Each concept's classes' accuracy, in the batch's order (`None` where that run's head
    /// dataset lacks one of its classes).
    pub targets: Vec<Option<Estimate>>,
}

/// What a batch found.
#[derive(Clone, Debug, Serialize)]
pub struct BatchResult {
    /// How the scenarios ran.
    pub mode: BatchMode,
    /// One row per concept.
    pub concepts: Vec<ConceptRow>,
    /// Every concept before the batch and after each run.
    pub cross_effects: Vec<CrossRow>,
    /// Checks of the batch as a whole: a joint run's checks of what it kept (datasets,
    /// templates...), or, in a sequential batch, each evaluation dataset from before the
    /// first run to after the last (each run judges only its own change, and small losses
    /// add up).
    pub batch_checks: Vec<Check>,
    /// All checks combined (`None` when the recipe states no criteria).
    pub verdict: Option<Verdict>,
}

impl BatchResult {
    /// Every check of the batch.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.concepts
            .iter()
            .flat_map(|c| &c.checks)
            .chain(&self.batch_checks)
    }
}

/// The accuracy of `classes` together from a run's per-class rows, before or after; `None`
/// when a class has no row there.
fn concept_accuracy(rows: &[ClassRow], classes: &[String], after: bool) -> Option<Estimate> {
    let (mut hits, mut n) = (0, 0);
    for class in classes {
        let row = rows.iter().find(|r| &r.class == class)?;
        let e = if after { row.after } else { row.before };
        hits += (e.value * e.n as f64).round() as usize;
        n += e.n;
    }
    (n > 0).then(|| Estimate::from_counts(hits, n))
}

/// A folder name for a concept: letters and digits kept, the rest turned into dashes.
fn folder_name(index: usize, name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    format!("concepts/{:02}-{}", index + 1, slug.trim_matches('-'))
}

/// The target bar of a concept's criteria, if it has one.
fn target_limit(audit: Option<&AuditSection>) -> Option<f64> {
    match audit?.target_at_most {
        Limit::At(limit) => Some(limit),
        Limit::Off => None,
    }
}

/// Runs the batch recipe `recipe` (text `recipe_text`) into the new folder `out`: announces
/// each run to `on_run` with the indices of the concepts it forgets and a label (e.g.
/// "concept 2/3: green"), passes every run's events to `on_event`.
/// Written atomically: a failed or cancelled batch leaves no folder.
pub fn run_batch(
    recipe: &Recipe,
    recipe_text: &str,
    out: &Path,
    cancel: &AtomicBool,
    mut on_run: impl FnMut(&[usize], &str),
    mut on_event: impl FnMut(&Event),
) -> Result<BatchResult> {
    let input = crate::demo::resolve_model(&recipe.model.path).map_err(anyhow::Error::msg)?;
    check_output(out, &input)?;
    let mut result = None;
    crate::atomic::write_folder(out, false, |staging| {
        let mut batch = match recipe.batch_mode() {
            BatchMode::Sequential => run_sequential(
                recipe,
                recipe_text,
                out,
                staging,
                cancel,
                &mut on_run,
                &mut on_event,
            )?,
            BatchMode::Joint => run_joint(
                recipe,
                recipe_text,
                staging,
                cancel,
                &mut on_run,
                &mut on_event,
            )?,
        };
        let any_criteria =
            batch.concepts.iter().any(|c| c.verdict.is_some()) || !batch.batch_checks.is_empty();
        batch.verdict = any_criteria.then(|| Verdict::combine(batch.checks().map(|c| c.verdict)));
        fs::write(
            staging.join(BATCH_JSON),
            serde_json::to_string_pretty(&batch)?,
        )?;
        let mut report = batch_markdown(recipe, &batch);
        if batch.mode == BatchMode::Joint {
            report.push_str("\n---\n\n");
            report.push_str(&fs::read_to_string(staging.join("report.md"))?);
        }
        fs::write(staging.join("report.md"), &report)?;
        // A joint batch's own run put its pictures at the top; its page shows them.
        let listed = write_report_page(staging, &report, recipe_text, None, &[], None)?;
        write_sha256sums(staging, &listed)?;
        result = Some(batch);
        Ok(())
    })
    .with_context(|| format!("batch {}", out.display()))?;
    Ok(result.expect("the batch was written"))
}

/// A sequential batch, assembled in `staging`: each concept's run from the previous run's
/// checkpoint, its result in `concepts/NN-name/`, the final checkpoint at the top.
fn run_sequential(
    recipe: &Recipe,
    recipe_text: &str,
    out: &Path,
    staging: &Path,
    cancel: &AtomicBool,
    on_run: &mut impl FnMut(&[usize], &str),
    on_event: &mut impl FnMut(&Event),
) -> Result<BatchResult> {
    let concepts = recipe.concepts();
    let mut model_path = recipe.model.path.clone();
    let mut runs = Vec::new();
    let mut last = None;
    for (k, (name, concept)) in concepts.iter().enumerate() {
        on_run(
            &[k],
            &format!("concept {}/{}: {name}", k + 1, concepts.len()),
        );
        let folder = folder_name(k, name);
        let dir = staging.join(&folder);
        fs::create_dir_all(&dir)?;
        // The run starts from the previous run's checkpoint in the staging folder;
        // its recipe names where that checkpoint will be once the batch is written.
        let mut run = concept.clone();
        let mut shown = concept.clone();
        if let Some(previous) = runs.last().map(|(folder, _): &(String, _)| folder) {
            run.model.path = model_path.clone();
            shown.model.path = out.join(previous).display().to_string();
        }
        let opened = Opened::open(run, shown.to_toml())
            .with_context(|| format!("[[scenario]] {} ({name})", k + 1))?;
        let mut finished = execute(&opened, cancel, &mut *on_event)
            .with_context(|| format!("[[scenario]] {} ({name})", k + 1))?;
        fill_result(&opened, &mut finished, &dir)?;
        model_path = dir.display().to_string();
        runs.push((folder, finished.metrics.clone()));
        last = Some((opened, finished));
    }
    let (opened, finished) = last.expect("a batch has at least one scenario");
    opened.checkpoint.export(&finished.model, staging)?;
    fs::write(staging.join("recipe.toml"), recipe_text)?;
    let classes_of = |j: usize| &concepts[j].1.forget.classes;
    let row = |label: String, per_class: &[ClassRow], after: bool| CrossRow {
        after: label,
        targets: (0..concepts.len())
            .map(|j| concept_accuracy(per_class, classes_of(j), after))
            .collect(),
    };
    let mut cross_effects = vec![row("before".into(), &runs[0].1.per_class, false)];
    cross_effects.extend(
        runs.iter()
            .zip(&concepts)
            .map(|((_, m), (name, _))| row(name.clone(), &m.per_class, true)),
    );
    let at_end = cross_effects
        .last()
        .expect("rows were added")
        .targets
        .clone();
    let rows = concepts
        .iter()
        .zip(&runs)
        .zip(at_end)
        .map(|(((name, concept), (folder, m)), end)| {
            let mut checks = m.audit.as_ref().map_or(Vec::new(), |a| a.checks.clone());
            if let (Some(limit), Some(end)) = (target_limit(concept.audit.as_ref()), &end) {
                checks.push(at_most(
                    "still-forgotten",
                    name,
                    end,
                    limit,
                    "target after the whole batch",
                ));
            }
            ConceptRow {
                name: name.clone(),
                classes: concept.forget.classes.clone(),
                target: Some(m.target),
                target_at_end: end,
                avg_score: Some(m.avg_score),
                folder: Some(folder.clone()),
                verdict: concept
                    .audit
                    .is_some()
                    .then(|| Verdict::combine(checks.iter().map(|c| c.verdict))),
                checks,
            }
        })
        .collect();
    let batch_checks = match recipe.audit.as_ref().map(|a| a.retained_within) {
        Some(Limit::At(points)) => {
            let (first, last) = (&runs[0].1, &runs[runs.len() - 1].1);
            // The evaluation datasets: the head's rows mix in the forgotten classes.
            first
                .datasets
                .iter()
                .filter(|d| d.other_classes_before.is_none())
                .filter_map(|b| {
                    let a = last.datasets.iter().find(|a| a.name == b.name)?;
                    let subject = format!("{} (whole batch)", b.name);
                    Some(within(&subject, &b.before, &a.after, points))
                })
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(BatchResult {
        mode: BatchMode::Sequential,
        concepts: rows,
        cross_effects,
        batch_checks,
        verdict: None,
    })
}

/// A joint batch, assembled in `staging`: one run forgetting every concept's classes.
fn run_joint(
    recipe: &Recipe,
    recipe_text: &str,
    staging: &Path,
    cancel: &AtomicBool,
    on_run: &mut impl FnMut(&[usize], &str),
    on_event: &mut impl FnMut(&Event),
) -> Result<BatchResult> {
    let concepts = recipe.concepts();
    let names: Vec<&str> = concepts.iter().map(|(n, _)| n.as_str()).collect();
    let all: Vec<usize> = (0..names.len()).collect();
    on_run(
        &all,
        &format!(
            "all {} concepts in one run: {}",
            names.len(),
            names.join(", ")
        ),
    );
    let opened = Opened::open(recipe.joint(), recipe_text.to_string())?;
    let mut finished = execute(&opened, cancel, &mut *on_event)?;
    fill_result(&opened, &mut finished, staging)?;
    let m = &finished.metrics;
    let rows = concepts
        .iter()
        .map(|(name, concept)| {
            let classes = &concept.forget.classes;
            let before = concept_accuracy(&m.per_class, classes, false);
            let after = concept_accuracy(&m.per_class, classes, true);
            let checks: Vec<Check> = target_limit(concept.audit.as_ref())
                .zip(after.as_ref())
                .map(|(limit, after)| at_most("target", name, after, limit, "target accuracy"))
                .into_iter()
                .collect();
            ConceptRow {
                name: name.clone(),
                classes: classes.clone(),
                target: before
                    .zip(after)
                    .map(|(before, after)| Change { before, after }),
                target_at_end: after,
                avg_score: None,
                folder: None,
                verdict: (!checks.is_empty())
                    .then(|| Verdict::combine(checks.iter().map(|c| c.verdict))),
                checks,
            }
        })
        .collect::<Vec<_>>();
    let cross_effects = [("before", false), ("joint run", true)]
        .into_iter()
        .map(|(label, after)| CrossRow {
            after: label.into(),
            targets: rows
                .iter()
                .map(|r| concept_accuracy(&m.per_class, &r.classes, after))
                .collect(),
        })
        .collect();
    // The union's target check is replaced by one per concept.
    let batch_checks = m.audit.as_ref().map_or(Vec::new(), |a| {
        a.checks
            .iter()
            .filter(|c| c.check != "target")
            .cloned()
            .collect()
    });
    Ok(BatchResult {
        mode: BatchMode::Joint,
        concepts: rows,
        cross_effects,
        batch_checks,
        verdict: None,
    })
}

/// The batch as Markdown: verdict, one row per concept, every check, the cross-effects.
pub fn batch_markdown(recipe: &Recipe, batch: &BatchResult) -> String {
    let mut out = String::new();
    let w = &mut out;
    let mode = match batch.mode {
        BatchMode::Sequential => "one after another",
        BatchMode::Joint => "jointly",
    };
    let _ = writeln!(
        w,
        "# Batch: {} forgets {} concepts {mode}\n\nModel `{}`, seed {}.",
        recipe.method.name,
        batch.concepts.len(),
        recipe.model.path,
        recipe.seed
    );
    if let Some(verdict) = batch.verdict {
        let _ = writeln!(w, "\n## Verdict: {}", verdict.word());
    }
    let concepts = batch.concepts.iter().map(|c| {
        vec![
            c.name.clone(),
            c.classes.join(", "),
            estimate(c.target.as_ref().map(|t| &t.before)),
            estimate(c.target.as_ref().map(|t| &t.after)),
            estimate(c.target_at_end.as_ref()),
            c.avg_score.map_or("–".into(), |s| format!("{s:.3}")),
            c.verdict
                .map_or("–".into(), |v| format!("**{}**", v.word())),
            c.folder
                .as_ref()
                .map_or("–".into(), |f| format!("[{f}]({f}/report.md)")),
        ]
    });
    table(
        w,
        "Concepts",
        &[CONCEPT_COLUMNS.as_slice(), &["run"]].concat(),
        concepts,
    );
    let checks: Vec<Vec<String>> = batch
        .concepts
        .iter()
        .flat_map(|c| {
            c.checks.iter().map(|check| {
                let mut cells = vec![c.name.clone()];
                cells.extend(check_cells(check));
                cells
            })
        })
        .chain(batch.batch_checks.iter().map(|check| {
            let mut cells = vec!["whole batch".to_string()];
            cells.extend(check_cells(check));
            cells
        }))
        .collect();
    if !checks.is_empty() {
        table(
            w,
            "Checks",
            &[
                "concept",
                "check",
                "on",
                "criterion",
                "measured",
                "n",
                "verdict",
            ],
            checks.into_iter(),
        );
    }
    let mut columns = vec!["after".to_string()];
    columns.extend(batch.concepts.iter().map(|c| c.name.clone()));
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows = batch.cross_effects.iter().map(|row| {
        let mut cells = vec![row.after.clone()];
        cells.extend(row.targets.iter().map(|t| estimate(t.as_ref())));
        cells
    });
    table(
        w,
        "Each concept's accuracy through the batch",
        &columns,
        rows,
    );
    out
}
