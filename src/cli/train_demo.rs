//! `lethe train-demo`: trains a Shapes demo model in stages, a progress bar per stage.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{self, DeviceChoice};
use crate::clip::checkpoint::Checkpoint;
use crate::data::dataset;
use crate::engine::LoadedModel;
use crate::eval::metrics::hash_folder;
use crate::eval::zero_shot;
use crate::train::arch::DemoArch;
use crate::train::pipeline::{Event, Stage, TrainPlan, TrainRun};

/// `lethe train-demo`.
#[derive(Debug, Args)]
#[command(after_help = STAGES_HELP)]
pub struct TrainDemoArgs {
    /// Architecture: vit (shapes-vit) or rn (shapes-rn, a ModifiedResNet with batch norm).
    #[arg(long)]
    arch: DemoArch,
    /// Folder for the final open_clip checkpoint; each stage's output is kept in DIR/stages,
    /// and running the same command again resumes where it stopped.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Start from this checkpoint (of the same architecture) instead of random weights.
    #[arg(long, value_name = "DIR")]
    init: Option<PathBuf>,
    /// Seed of the initial weights and of every stage's scenes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save the running stage every N steps, so an interrupted run keeps its progress.
    #[arg(long, default_value_t = 250)]
    save_every: usize,
    /// Store the final weights as f32 instead of f16.
    #[arg(long)]
    f32: bool,
    /// Where to compute: auto, gpu or cpu.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    #[command(flatten)]
    stages: StageArgs,
}

const STAGES_HELP: &str = "\
Stages (each saved in DIR/stages and resumed by running the command again):
  1 attributes  the vision tower learns each scene's object, colour, size and background
                through temporary heads (thrown away afterwards): this is where shape is learnt
  2 lit         locked-image text tuning: the vision tower is frozen and the text tower learns
                to point captions at the image embeddings of a pool of scenes
  3 joint       optional (0 steps by default): both towers fine-tuned contrastively at a low
                learning rate
Defaults (the shipped demo models' settings): attributes 6850 steps of 128 images at a peak
learning rate of 1e-3 (vit; about 50 minutes on 2 cores), 2000 steps at 2e-3 (rn); lit 500
steps of 256 pairs at 1e-3 on a pool of 20000 scenes; joint 0 steps of 128 pairs at 2e-5. A
stage with 0 steps is skipped. Changing a stage's settings trains it and every later stage
again.";

/// Per-stage settings; unset ones keep the architecture's defaults.
#[derive(Debug, Args)]
#[command(next_help_heading = "Stage settings")]
struct StageArgs {
    /// Steps of attribute pretraining.
    #[arg(long, value_name = "N")]
    attributes_steps: Option<usize>,
    /// Images per attribute step.
    #[arg(long, value_name = "B")]
    attributes_batch: Option<usize>,
    /// Peak learning rate of attribute pretraining.
    #[arg(long, value_name = "X")]
    attributes_lr: Option<f64>,
    /// Steps of locked-image text tuning.
    #[arg(long, value_name = "N")]
    lit_steps: Option<usize>,
    /// Image–caption pairs per LiT step.
    #[arg(long, value_name = "B")]
    lit_batch: Option<usize>,
    /// Peak learning rate of LiT.
    #[arg(long, value_name = "X")]
    lit_lr: Option<f64>,
    /// Scenes whose image embeddings LiT computes once and pairs with captions.
    #[arg(long, value_name = "N")]
    lit_pool: Option<usize>,
    /// Steps of the joint contrastive fine-tune.
    #[arg(long, value_name = "N")]
    joint_steps: Option<usize>,
    /// Image–caption pairs per joint step.
    #[arg(long, value_name = "B")]
    joint_batch: Option<usize>,
    /// Peak learning rate of the joint fine-tune.
    #[arg(long, value_name = "X")]
    joint_lr: Option<f64>,
}

impl StageArgs {
    /// `plan` with every given setting applied; warm-ups shrink to a tenth of short stages.
    fn apply(&self, plan: &mut TrainPlan) {
        let given = [
            (
                Stage::Attributes,
                self.attributes_steps,
                self.attributes_batch,
                self.attributes_lr,
            ),
            (Stage::Lit, self.lit_steps, self.lit_batch, self.lit_lr),
            (
                Stage::Joint,
                self.joint_steps,
                self.joint_batch,
                self.joint_lr,
            ),
        ];
        for (stage, steps, batch, lr) in given {
            let options = plan.options_mut(stage);
            options.steps = steps.unwrap_or(options.steps);
            options.batch = batch.unwrap_or(options.batch);
            options.learning_rate = lr.unwrap_or(options.learning_rate);
            options.warmup = options.warmup.min(options.steps / 10);
        }
        plan.lit_pool = self.lit_pool.unwrap_or(plan.lit_pool);
    }
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
    let mut plan = TrainPlan::new(args.arch);
    plan.seed = args.seed;
    args.stages.apply(&mut plan);
    plan.validate()?;
    crate::atomic::check_writable(&args.out).context("--out")?;
    let device = backend::resolve(args.device).map_err(anyhow::Error::msg)?;
    let init = match &args.init {
        None => None,
        Some(dir) => {
            crate::atomic::refuse_inputs(&args.out, [dir.as_path()]).context("--out and --init")?;
            let checkpoint = Checkpoint::open(dir)?;
            if checkpoint.spec != args.arch.spec() {
                bail!(
                    "{}: not a {} checkpoint (its configuration differs)",
                    dir.display(),
                    args.arch.model_name()
                );
            }
            let model = checkpoint.load(&device.device.clone().autodiff())?;
            // Resuming depends on what the starting weights are, not on where they lie.
            let digest = hash_folder(dir)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
            Some((model, format!("sha256:{digest}")))
        }
    };
    eprintln!(
        "training {} on {}",
        args.arch.model_name(),
        device.description
    );
    let start = Instant::now();
    let mut progress = StageProgress::default();
    TrainRun {
        plan: &plan,
        init,
        out: &args.out,
        save_every: args.save_every,
        dtype: if args.f32 {
            safetensors::Dtype::F32
        } else {
            safetensors::Dtype::F16
        },
        device: &device.device,
    }
    .run(&mut |event| progress.show(event))?;
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

/// The progress bar of the running stage, or plain log lines without a terminal.
#[derive(Default)]
struct StageProgress {
    bar: Option<ProgressBar>,
    started: Option<Instant>,
    smoothed: Option<f32>,
    steps: usize,
}

impl StageProgress {
    fn show(&mut self, event: Event) {
        match event {
            Event::Reused { stage } => {
                eprintln!("stage {}: already trained, reused", stage.name());
            }
            Event::Started {
                stage,
                steps,
                from_step,
            } => {
                if from_step > 0 {
                    eprintln!("stage {}: resuming at step {from_step}", stage.name());
                }
                let bar = ProgressBar::new(steps as u64).with_style(
                    ProgressStyle::with_template(
                        "{prefix:>10} {bar:30} {pos}/{len}  {elapsed_precise} (eta {eta_precise})  {msg}",
                    )
                    .expect("the template is valid"),
                );
                bar.set_prefix(stage.name());
                bar.set_position(from_step as u64);
                self.bar = Some(bar);
                self.started = Some(Instant::now());
                self.smoothed = None;
                self.steps = steps;
            }
            Event::Step { stage, report } => {
                let average = self
                    .smoothed
                    .map_or(report.loss, |s| 0.95 * s + 0.05 * report.loss);
                self.smoothed = Some(average);
                let readings: Vec<String> = report
                    .readings
                    .iter()
                    .map(|(name, value)| format!("{name} {value:.2}"))
                    .collect();
                let message = format!(
                    "loss {average:.3}  lr {:.1e}  {}",
                    report.learning_rate,
                    readings.join("  ")
                );
                let Some(bar) = &self.bar else { return };
                bar.set_message(message.clone());
                bar.inc(1);
                // Without a terminal the bar is hidden; log plain lines instead.
                let every = (self.steps / 100).max(1);
                if bar.is_hidden() && (report.step % every == 0 || report.step == self.steps) {
                    eprintln!(
                        "{} {}/{}  {:.0} s  {message}",
                        stage.name(),
                        report.step,
                        self.steps,
                        self.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
                    );
                }
            }
            Event::Finished { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_states_the_default_schedule() {
        let help = STAGES_HELP.replace('\n', " ");
        for arch in [DemoArch::Vit, DemoArch::Rn] {
            let plan = TrainPlan::new(arch);
            for stage in Stage::ALL {
                let o = plan.options(stage);
                let stated = [
                    format!("{} steps", o.steps),
                    format!("{} ", o.batch),
                    format!("{:e}", o.learning_rate),
                ];
                for words in stated {
                    assert!(
                        help.contains(&words),
                        "{arch} {}: '{words}' not in the help",
                        stage.name()
                    );
                }
            }
            assert!(help.contains(&format!("pool of {} scenes", plan.lit_pool)));
        }
    }
}
