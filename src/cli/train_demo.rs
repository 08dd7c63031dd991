//! `lethe train-demo`: trains a Shapes demo model from scratch with a progress bar.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{self, DeviceChoice};
use crate::clip::checkpoint::{Checkpoint, write_open_clip};
use crate::data::dataset;
use crate::engine::LoadedModel;
use crate::eval::zero_shot;
use crate::train::arch::DemoArch;
use crate::train::trainer::{TrainOptions, Trainer};

/// `lethe train-demo`.
#[derive(Debug, Args)]
pub struct TrainDemoArgs {
    /// Architecture: vit (shapes-vit) or rn (shapes-rn, a ModifiedResNet with batch norm).
    #[arg(long)]
    arch: DemoArch,
    /// Folder to write the open_clip checkpoint into (created; files replaced atomically).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Optimiser steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Continue from this checkpoint (of the same architecture) instead of random weights;
    /// give a new --seed to see new scenes.
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    /// Image–caption pairs per step.
    #[arg(long)]
    batch: Option<usize>,
    /// Peak learning rate (after warm-up; cosine decay to zero).
    #[arg(long)]
    lr: Option<f64>,
    /// Seed of the initial weights and of the training scenes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the checkpoint every N steps, so an interrupted run keeps its progress.
    #[arg(long, default_value_t = 500)]
    save_every: usize,
    /// Store weights as f32 instead of f16.
    #[arg(long)]
    f32: bool,
    /// Where to compute: auto, gpu or cpu.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

/// Held-out Shapes sets (seeds never used for training batches) reported after training.
const CHECKS: [&str; 4] = [
    "shapes:shapes?seed=9001&n=500",
    "shapes:colors?seed=9002&n=500",
    "shapes:fruits?seed=9003&n=500",
    "shapes:color-shapes?seed=9004&n=1000",
];

/// Runs `lethe train-demo`.
pub fn train_demo(args: TrainDemoArgs) -> Result<()> {
    let mut options = TrainOptions::new(args.arch);
    options.seed = args.seed;
    options.steps = args.steps.unwrap_or(options.steps);
    options.batch = args.batch.unwrap_or(options.batch);
    options.learning_rate = args.lr.unwrap_or(options.learning_rate);
    options.warmup = options.warmup.min(options.steps / 10);
    if options.steps == 0 || options.batch < 2 {
        bail!("--steps must be at least 1 and --batch at least 2");
    }
    let device = backend::resolve(args.device).map_err(anyhow::Error::msg)?;
    eprintln!(
        "training {} on {} ({} steps of {} pairs)",
        args.arch.model_name(),
        device.description,
        options.steps,
        options.batch
    );
    let dtype = if args.f32 {
        safetensors::Dtype::F32
    } else {
        safetensors::Dtype::F16
    };
    let config = args.arch.open_clip_config();
    let mut trainer = match &args.init {
        None => Trainer::new(options.clone(), &device.device),
        Some(dir) => {
            let checkpoint = Checkpoint::open(dir)?;
            if checkpoint.spec != args.arch.spec() {
                bail!(
                    "{}: not a {} checkpoint (its configuration differs)",
                    dir.display(),
                    args.arch.model_name()
                );
            }
            let autodiff = device.device.clone().autodiff();
            Trainer::resume(options.clone(), checkpoint.load(&autodiff)?, &autodiff)
        }
    };
    let bar = ProgressBar::new(options.steps as u64).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps  {elapsed_precise} (eta {eta_precise})  {msg}",
        )
        .expect("the template is valid"),
    );
    let start = Instant::now();
    let mut smoothed = None::<f32>;
    let log_every = (options.steps / 50).max(1);
    for _ in 0..options.steps {
        let report = trainer.step();
        if !report.loss.is_finite() {
            bar.abandon();
            bail!(
                "training diverged at step {} (loss {}); try a lower --lr",
                report.step,
                report.loss
            );
        }
        let average = smoothed.map_or(report.loss, |s| 0.95 * s + 0.05 * report.loss);
        smoothed = Some(average);
        bar.set_message(format!(
            "loss {average:.3}  lr {:.1e}  scale {:.1}",
            report.learning_rate, report.logit_scale
        ));
        bar.inc(1);
        // Without a terminal the bar is hidden; log plain lines instead.
        if bar.is_hidden() && (report.step % log_every == 0 || report.step == options.steps) {
            eprintln!(
                "step {}/{}  {:.0} s  loss {average:.3}",
                report.step,
                options.steps,
                start.elapsed().as_secs_f64()
            );
        }
        if args.save_every > 0 && report.step % args.save_every == 0 {
            write_open_clip(&trainer.model(), &config, dtype, &args.out)?;
        }
    }
    bar.finish();
    write_open_clip(&trainer.model(), &config, dtype, &args.out)?;
    eprintln!(
        "wrote {} in {:.0} s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    let loaded = LoadedModel::open(&args.out, args.device)?;
    for spec in CHECKS {
        let data = dataset::open(spec)?;
        let result = zero_shot(&loaded, &data, &data.templates, 256);
        println!("{spec:<40} accuracy {:.4}", result.accuracy);
    }
    Ok(())
}
