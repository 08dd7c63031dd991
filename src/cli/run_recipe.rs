//! `lethe run RECIPE --out DIR`: one unlearning run from a recipe, with a progress bar. The
//! output folder appears only once everything in it is written, so an interrupted run (Ctrl-C)
//! leaves no result behind.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::batch::run_batch;
use crate::eval::audit::{AuditNotPassed, Check};
use crate::eval::interval::Estimate;
use crate::recipe::Recipe;
use crate::unlearn::job::{Event, StepReport};
use crate::workflow::{Opened, check_output, execute, write_outputs};

/// `lethe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe (TOML): model; classes to forget, with optional real forget `images`, `retain`
    /// pictures to keep, a `verify` set of real pictures of the class that the stop is judged on,
    /// and `calibration` pictures of what is kept that a method chooses its settings on (the
    /// subgroup method's soup); method and settings; evaluation datasets; optional `[audit]`
    /// criteria; an optional `[subgroup]` (forget only a subgroup of the class, e.g. red stars,
    /// judged by Target, Retain, All, other datasets and the Score); or several concepts as
    /// `[[scenario]]` entries (a batch, run one after another or jointly as `[batch] mode` says).
    /// See recipes/ for examples. Exit code 3: an audit check failed; 4: the audit is inconclusive
    /// (more pictures needed); the result is written either way.
    #[arg(value_name = "RECIPE")]
    recipe: PathBuf,
    /// Folder for the edited checkpoint, a copy of the recipe, metrics.json, report.md,
    /// report.html, SHA256SUMS (every file's digest, for `sha256sum --check`) and, for a method
    /// that trains low-rank adapters, the edit alone as adapters.safetensors; must be new or
    /// empty, never the input checkpoint.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Override the recipe's device: auto, gpu or cpu.
    #[arg(long)]
    device: Option<String>,
}

/// One line of progress: the losses and the forget accuracy of the last step.
fn describe(report: &StepReport) -> String {
    let mut parts: Vec<String> = report
        .losses
        .iter()
        .map(|(name, value)| format!("{name} {value:.4}"))
        .collect();
    if let Some(accuracy) = report.forget_accuracy {
        parts.push(format!("forget-set accuracy {accuracy:.2}"));
    }
    parts.join("  ")
}

/// Runs `lethe run`.
pub fn run_recipe(args: &RunArgs) -> Result<()> {
    let (mut recipe, text) = Recipe::load(&args.recipe)?;
    if let Some(device) = &args.device {
        recipe.model.device = device.clone();
    }
    if recipe.is_batch() {
        return run_batch_recipe(args, &recipe, &text);
    }
    let opened =
        Opened::open(recipe, text).with_context(|| format!("recipe {}", args.recipe.display()))?;
    check_output(&args.out, opened.model_dir())?;
    let never_cancelled = AtomicBool::new(false);
    eprintln!(
        "{} forgets {} on {} ({})",
        opened.recipe.method.name,
        opened.recipe.forget.classes.join(", "),
        opened.recipe.model.path,
        opened.loaded.device.description
    );
    eprintln!("measuring the model before unlearning; it is measured again after");
    let mut progress = Progress::new();
    let mut finished = execute(&opened, &never_cancelled, |event| progress.show(event))?;
    write_outputs(&opened, &mut finished, &args.out)?;
    let m = &finished.metrics;
    println!(
        "target accuracy {} → {}, Avg Score {:.3}{}, {} steps in {:.1} s",
        interval(&m.target.before),
        interval(&m.target.after),
        m.avg_score,
        m.avg_score_interval.map_or(String::new(), |i| format!(
            " [{:.3}, {:.3}]",
            i.ci_low, i.ci_high
        )),
        m.steps,
        m.runtime_s
    );
    for row in &m.datasets {
        println!(
            "  {:<44} {} → {}",
            row.name,
            interval(&row.before),
            interval(&row.after)
        );
    }
    println!("wrote {}", args.out.display());
    let Some(audit) = &m.audit else {
        return Ok(());
    };
    println!("audit: {}", audit.verdict.word());
    print_checks("", &audit.checks);
    match AuditNotPassed::from_checks(&audit.checks) {
        Some(not_passed) => Err(not_passed.into()),
        None => Ok(()),
    }
}

/// `lethe run` on a recipe with `[[scenario]]` entries.
fn run_batch_recipe(args: &RunArgs, recipe: &Recipe, text: &str) -> Result<()> {
    let never_cancelled = AtomicBool::new(false);
    let mut progress = Progress::new();
    let batch = run_batch(
        recipe,
        text,
        &args.out,
        &never_cancelled,
        |_, run| eprintln!("{run} ({})", recipe.method.name),
        |event| progress.show(event),
    )
    .with_context(|| format!("recipe {}", args.recipe.display()))?;
    for concept in &batch.concepts {
        let shown = |e: Option<&Estimate>| e.map_or("–".into(), interval);
        println!(
            "{:<24} {} → {} (after the batch {}){}",
            concept.name,
            shown(concept.target.as_ref().map(|t| &t.before)),
            shown(concept.target.as_ref().map(|t| &t.after)),
            shown(concept.target_at_end.as_ref()),
            concept
                .verdict
                .map_or(String::new(), |v| format!("  {}", v.word()))
        );
        print_checks("  ", &concept.checks);
    }
    print_checks("", &batch.batch_checks);
    println!("wrote {}", args.out.display());
    let Some(verdict) = batch.verdict else {
        return Ok(());
    };
    println!("audit: {}", verdict.word());
    match AuditNotPassed::from_checks(batch.checks()) {
        Some(not_passed) => Err(not_passed.into()),
        None => Ok(()),
    }
}

/// One line per check.
fn print_checks(indent: &str, checks: &[Check]) {
    for check in checks {
        println!(
            "{indent}  {:<12} {:<15} {:<44} {}",
            check.verdict.word(),
            check.check,
            check.subject,
            check.criterion
        );
    }
}

/// The progress bar on a terminal, one line per step elsewhere.
struct Progress {
    bar: ProgressBar,
    started: bool,
    terminal: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            started: false,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, event: &Event) {
        let Self {
            bar,
            started,
            terminal,
        } = self;
        match event {
            Event::Step {
                step,
                max_steps,
                report,
                elapsed,
            } => {
                if !*started && *terminal {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} steps  {elapsed_precise}  {msg}",
                        )
                        .expect("the template is valid"),
                    );
                    *started = true;
                }
                bar.set_length(*max_steps as u64);
                bar.set_position(*step as u64);
                bar.set_message(describe(report));
                if !*terminal {
                    eprintln!(
                        "step {step}/{max_steps}  {:.1} s  {}",
                        elapsed.as_secs_f64(),
                        describe(report)
                    );
                }
            }
            Event::Ended(_) => {
                // A batch runs several methods in turn: each gets a fresh bar.
                bar.finish_and_clear();
                *bar = ProgressBar::hidden();
                *started = false;
            }
        }
    }
}

/// An accuracy with its 95% interval and sample size, for the terminal.
fn interval(e: &Estimate) -> String {
    format!(
        "{:.3} [{:.3}, {:.3}] n={}",
        e.value, e.ci_low, e.ci_high, e.n
    )
}
