//! `lethe bench step`: seconds per unlearning step of a registered method (forward, backward,
//! update and the method's own per-step checks, with its batch and perturbation counts) on a
//! recipe's scenario, for comparison with `bench/reference.py --unlearn-step` on the same
//! checkpoint.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::backend::DeviceChoice;
use crate::limits::{MAX_BATCH_ARG, MAX_ITERS, count_arg};
use crate::recipe::Recipe;
use crate::unlearn::methods::{find, known_settings, prepare};
use crate::workflow::Opened;

/// `lethe bench step`.
#[derive(Debug, Args)]
pub struct BenchStepArgs {
    /// The scenario: a recipe whose model, forget classes and method settings are used.
    #[arg(
        long,
        value_name = "RECIPE",
        default_value = "recipes/forget-star-vit.toml"
    )]
    recipe: PathBuf,
    /// Model instead of the recipe's: a checkpoint folder or demo:vit / demo:rn.
    #[arg(long, value_name = "DIR|demo:NAME")]
    model: Option<String>,
    /// Method instead of the recipe's (a registered name, see `lethe methods`); it keeps the
    /// recipe's settings it has and its defaults for the rest.
    #[arg(long)]
    method: Option<String>,
    /// Forget pictures per step (the method's `batch` setting) instead of the recipe's.
    #[arg(long, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_BATCH_ARG>)]
    batch: Option<usize>,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_ITERS>)]
    iters: usize,
    /// Where to compute: auto, gpu or cpu (default: the recipe's).
    #[arg(long)]
    device: Option<DeviceChoice>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The method's settings for a timing run: the recipe's, `--batch`, and synthetic pictures
/// made with a single ascent step each (they are only the step's input here, and making them
/// properly on a large model takes longer than the timing itself).
fn timing_settings(
    method: &dyn crate::unlearn::methods::UnlearningMethod,
    recipe: &toml::Table,
    batch: Option<usize>,
) -> Result<toml::Table> {
    let defaults = method.defaults();
    let mut settings = known_settings(method, recipe);
    if let Some(batch) = batch {
        if !defaults.contains_key("batch") {
            bail!("--batch: method '{}' has no batch setting", method.name());
        }
        settings.insert("batch".into(), toml::Value::Integer(batch as i64));
    }
    if defaults.contains_key("synthetic") {
        let synthetic = settings
            .entry("synthetic")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(table) = synthetic.as_table_mut() {
            table.insert("max_steps".into(), toml::Value::Integer(1));
        }
    }
    Ok(settings)
}

/// Runs `lethe bench step`.
pub fn bench_step(args: &BenchStepArgs) -> Result<()> {
    let (mut recipe, text) = Recipe::load(&args.recipe)?;
    if recipe.is_batch() {
        bail!(
            "--recipe {}: a batch of [[scenario]]s; name a single-scenario recipe",
            args.recipe.display()
        );
    }
    if let Some(model) = &args.model {
        recipe.model.path = model.clone();
    }
    if let Some(device) = args.device {
        recipe.model.device = device.to_string();
    }
    let method = find(args.method.as_deref().unwrap_or(&recipe.method.name)).context("--method")?;
    let settings = timing_settings(method, &recipe.method.settings, args.batch)?;
    recipe.method.name = method.name().to_string();
    recipe.method.settings = settings.clone();
    let opened =
        Opened::open(recipe, text).with_context(|| format!("recipe {}", args.recipe.display()))?;
    let device = &opened.loaded.device;
    let trainable = opened.checkpoint.load(&device.device.clone().autodiff())?;
    let cancel = AtomicBool::new(false);
    let mut prepared = prepare(method.name(), &settings, &opened.setup(&trainable, &cancel))?;
    let original = trainable.clone();
    let mut model = trainable;
    // A step that meets the method's stop rule is timed like any other: only its cost counts.
    let mut step = || -> Result<()> {
        let (next, _) = prepared.method.step(model.clone(), &original)?;
        model = next;
        device
            .device
            .sync()
            .context("device failed while benchmarking")
    };
    step()?;
    step()?;
    let start = Instant::now();
    for _ in 0..args.iters {
        step()?;
    }
    let seconds = start.elapsed().as_secs_f64() / args.iters as f64;
    let batch = settings.get("batch").and_then(toml::Value::as_integer);
    let head = &opened.plan.head;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"method": method.name(), "model": opened.recipe.model.path,
                "batch": batch, "forget_images": prepared.forget_images,
                "classes": head.classes.len(), "templates": head.templates.len(),
                "seconds_per_step": seconds, "device": device.description})
        );
    } else {
        println!("device       {}", device.description);
        println!("model        {}", opened.recipe.model.path);
        println!(
            "method       {}{}",
            method.name(),
            batch.map_or(String::new(), |b| format!(" (batch {b})"))
        );
        println!("s/step       {seconds:.3}");
    }
    Ok(())
}
