//! `lethe bench train`: seconds per training step of each demo-training stage, measured on
//! the stage's real step (rendering its scenes included), for comparison with
//! `bench/reference.py --train-step` on the same architecture and batch.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use crate::backend::{self, DeviceChoice};
use crate::clip::Clip;
use crate::limits::{MAX_BATCH_ARG, MAX_ITERS, count_arg};
use crate::train::StageStart;
use crate::train::arch::DemoArch;
use crate::train::init::initialize;
use crate::train::pipeline::{Stage, TrainPlan, stage_trainer};

/// `lethe bench train`.
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Architecture: vit or rn.
    #[arg(long)]
    arch: DemoArch,
    /// Stage: attributes, lit or joint.
    #[arg(long)]
    stage: String,
    /// Batch (default: the stage's training batch).
    #[arg(long, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_BATCH_ARG>)]
    batch: Option<usize>,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_ITERS>)]
    iters: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Where to compute: auto, gpu or cpu.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

/// Runs `lethe bench train`.
pub fn bench_train(args: &BenchTrainArgs) -> Result<()> {
    let Some(stage) = Stage::ALL.into_iter().find(|s| s.name() == args.stage) else {
        bail!(
            "--stage '{}' is not a stage (attributes, lit or joint)",
            args.stage
        );
    };
    let plan = TrainPlan::new(args.arch);
    let mut options = plan.options(stage).clone();
    options.batch = args.batch.unwrap_or(options.batch);
    if options.batch < 2 || args.iters == 0 {
        bail!("--batch must be at least 2 and --iters at least 1");
    }
    options.steps = args.iters + 2;
    let device = backend::resolve(args.device).map_err(anyhow::Error::msg)?;
    let autodiff = device.device.clone().autodiff();
    let spec = args.arch.spec();
    let mut model = Clip::new(&spec, &autodiff);
    initialize(&mut model, 0, &autodiff);
    let batch = options.batch;
    let start = StageStart {
        spec: &spec,
        options,
        seed: 0,
        step: 0,
    };
    let mut trainer = stage_trainer(stage, model, start, batch * 4);
    trainer.step();
    trainer.step();
    let start = Instant::now();
    for _ in 0..args.iters {
        trainer.step();
    }
    let seconds = start.elapsed().as_secs_f64() / args.iters as f64;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"arch": args.arch.to_string(), "stage": stage.name(),
                "batch": batch, "seconds_per_step": seconds, "device": device.description})
        );
    } else {
        println!("device       {}", device.description);
        println!("model        {}", args.arch.model_name());
        println!("stage        {} (batch {batch})", stage.name());
        println!("s/step       {seconds:.3}");
    }
    Ok(())
}
