//! `lethe run RECIPE --out DIR`: one unlearning run from a recipe, with a progress bar. The
//! output folder appears only once everything in it is written, so an interrupted run (Ctrl-C)
//! leaves no result behind.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::recipe::Recipe;
use crate::unlearn::job::{Event, StepReport};
use crate::workflow::{Opened, check_output, execute, write_outputs};

/// `lethe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe (TOML): model; classes to forget, with optional real forget `images`,
    /// `retain` pictures to keep, and a `verify` set of real pictures of the class that the stop
    /// is judged on; method and settings; evaluation datasets. See recipes/ for examples.
    #[arg(value_name = "RECIPE")]
    recipe: PathBuf,
    /// Folder for the edited checkpoint, a copy of the recipe, metrics.json and report.md
    /// (must be new or empty; never the input checkpoint).
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
    let opened =
        Opened::open(recipe, text).with_context(|| format!("recipe {}", args.recipe.display()))?;
    check_output(&args.out, opened.model_dir())?;
    let never_cancelled = AtomicBool::new(false);
    let terminal = std::io::stderr().is_terminal();
    eprintln!(
        "{} forgets {} on {} ({})",
        opened.recipe.method.name,
        opened.recipe.forget.classes.join(", "),
        opened.recipe.model.path,
        opened.loaded.device.description
    );
    eprintln!("measuring the model before unlearning; it is measured again after");
    let bar = ProgressBar::hidden();
    let mut started = false;
    let mut finished = execute(&opened, &never_cancelled, |event| match event {
        Event::Step {
            step,
            max_steps,
            report,
            elapsed,
        } => {
            if !started && terminal {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} steps  {elapsed_precise}  {msg}",
                    )
                    .expect("the template is valid"),
                );
                started = true;
            }
            bar.set_length(*max_steps as u64);
            bar.set_position(*step as u64);
            bar.set_message(describe(report));
            if !terminal {
                eprintln!(
                    "step {step}/{max_steps}  {:.1} s  {}",
                    elapsed.as_secs_f64(),
                    describe(report)
                );
            }
        }
        Event::Ended(_) => bar.finish_and_clear(),
    })?;
    write_outputs(&opened, &mut finished, &args.out)?;
    let m = &finished.metrics;
    println!(
        "target accuracy {:.3} → {:.3}, Avg Score {:.3}, {} steps in {:.1} s",
        m.target.before, m.target.after, m.avg_score, m.steps, m.runtime_s
    );
    for row in &m.datasets {
        println!("  {:<44} {:.3} → {:.3}", row.name, row.before, row.after);
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
