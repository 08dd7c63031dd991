//! The staged training run behind `lethe train-demo`: which stages run with which settings,
//! and where each one's output is kept so that an interrupted run resumes.
//!
//! Stage `k` of a run writing to `OUT` keeps its checkpoint (f32) and a `progress.json` in
//! `OUT/stages/k-NAME/`, replaced atomically every `save_every` steps and at its end. The
//! progress file records a fingerprint of everything the stage's result depends on (the
//! architecture, the seed, the starting checkpoint, and the settings of this stage and every
//! stage before it). A later run with the same fingerprint skips a finished stage and
//! continues an unfinished one from its last save, on the same batches an uninterrupted run
//! would have seen (the optimiser's moments and the attribute stage's temporary heads start
//! afresh); a changed fingerprint trains the stage again. The final model is written to `OUT` itself.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::arch::DemoArch;
use super::attributes::AttributeTrainer;
use super::captions::without_unseen_tokens;
use super::contrastive::ContrastiveTrainer;
use super::init::initialize;
use super::lit::LitTrainer;
use super::{StageOptions, StageStart, StageTrainer, StepReport};
use crate::atomic;
use crate::clip::Clip;
use crate::clip::checkpoint::{Checkpoint, write_open_clip};

/// The stages, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Vision tower with temporary attribute heads.
    Attributes,
    /// Locked-image text tuning.
    Lit,
    /// Joint contrastive fine-tune.
    Joint,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 3] = [Stage::Attributes, Stage::Lit, Stage::Joint];

    /// The stage's name in messages and flags.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Attributes => "attributes",
            Stage::Lit => "lit",
            Stage::Joint => "joint",
        }
    }

    /// The folder under `OUT/stages` holding the stage's output.
    fn folder(self) -> String {
        let position = Stage::ALL.iter().position(|s| *s == self).unwrap_or(0);
        format!("{}-{}", position + 1, self.name())
    }
}

/// Everything a training run does.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainPlan {
    /// Which model.
    pub arch: DemoArch,
    /// Seed of the initial weights and of every stage's scenes.
    pub seed: u64,
    /// Attribute pretraining of the vision tower.
    pub attributes: StageOptions,
    /// Locked-image text tuning.
    pub lit: StageOptions,
    /// Scenes whose image embeddings LiT pairs with captions.
    pub lit_pool: usize,
    /// Joint contrastive fine-tune (0 steps: skipped).
    pub joint: StageOptions,
}

impl TrainPlan {
    /// The settings the shipped demo models were trained with.
    pub fn new(arch: DemoArch) -> Self {
        let (attribute_steps, attribute_lr) = match arch {
            DemoArch::Vit => (6850, 1e-3),
            DemoArch::Rn => (2000, 2e-3),
        };
        Self {
            arch,
            seed: 0,
            attributes: StageOptions {
                steps: attribute_steps,
                batch: 128,
                learning_rate: attribute_lr,
                warmup: 100,
                weight_decay: 0.05,
            },
            lit: StageOptions {
                steps: 500,
                batch: 256,
                learning_rate: 1e-3,
                warmup: 50,
                weight_decay: 0.05,
            },
            lit_pool: 20_000,
            joint: StageOptions {
                steps: 0,
                batch: 128,
                learning_rate: 2e-5,
                warmup: 20,
                weight_decay: 0.05,
            },
        }
    }

    /// The settings of `stage`.
    pub fn options(&self, stage: Stage) -> &StageOptions {
        match stage {
            Stage::Attributes => &self.attributes,
            Stage::Lit => &self.lit,
            Stage::Joint => &self.joint,
        }
    }

    /// The settings of `stage`, to change.
    pub fn options_mut(&mut self, stage: Stage) -> &mut StageOptions {
        match stage {
            Stage::Attributes => &mut self.attributes,
            Stage::Lit => &mut self.lit,
            Stage::Joint => &mut self.joint,
        }
    }

    /// A stage's settings as they count for resuming.
    fn stage_settings(&self, stage: Stage) -> Value {
        let mut settings = json!(self.options(stage));
        if stage == Stage::Lit {
            settings["pool"] = json!(self.lit_pool);
        }
        settings
    }

    /// What the result of `stage` depends on, starting from `init`.
    fn fingerprint(&self, stage: Stage, init: &str) -> Value {
        let upto = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        let stages: Vec<Value> = Stage::ALL[..=upto]
            .iter()
            .map(|s| json!({ "stage": s.name(), "settings": self.stage_settings(*s) }))
            .collect();
        json!({
            "arch": self.arch.to_string(),
            "seed": self.seed,
            "init": init,
            "stages": stages,
        })
    }

    /// Checks every setting before anything is trained.
    pub fn validate(&self) -> Result<()> {
        for stage in Stage::ALL {
            let o = self.options(stage);
            let name = stage.name();
            if o.steps > 0 && o.batch < 2 {
                bail!(
                    "--{name}-batch must be at least 2 (contrastive and batch-norm training need pairs)"
                );
            }
            if !(o.learning_rate.is_finite() && o.learning_rate > 0.0) {
                bail!(
                    "--{name}-lr must be a positive number, not {}",
                    o.learning_rate
                );
            }
        }
        if self.lit.steps > 0 && self.lit_pool < self.lit.batch {
            bail!(
                "--lit-pool ({}) must hold at least one batch (--lit-batch {})",
                self.lit_pool,
                self.lit.batch
            );
        }
        if Stage::ALL.iter().all(|s| self.options(*s).steps == 0) {
            bail!("every stage has 0 steps: nothing to train");
        }
        Ok(())
    }
}

/// What a stage's folder says about it.
#[derive(Serialize, Deserialize)]
struct Progress {
    fingerprint: Value,
    steps_done: usize,
    /// Token ids of every caption trained on up to here (earlier stages included).
    seen_tokens: BTreeSet<u32>,
}

/// What the run reports as it goes.
pub enum Event<'a> {
    /// A stage starts (or resumes at `from_step`).
    Started {
        /// Which.
        stage: Stage,
        /// Its total steps.
        steps: usize,
        /// Steps already done by an earlier run.
        from_step: usize,
    },
    /// A finished stage was found on disk and is reused.
    Reused {
        /// Which.
        stage: Stage,
    },
    /// A step was taken.
    Step {
        /// Which stage.
        stage: Stage,
        /// What it did.
        report: &'a StepReport,
    },
    /// A stage ended.
    Finished {
        /// Which.
        stage: Stage,
    },
}

/// Where the run writes and how.
pub struct TrainRun<'a> {
    /// The plan.
    pub plan: &'a TrainPlan,
    /// The starting model instead of fresh weights, with a name that changes whenever its
    /// weights do (e.g. a digest of its files).
    pub init: Option<(Clip, String)>,
    /// The output folder; stage outputs go to `out/stages`.
    pub out: &'a Path,
    /// Save the current stage every this many steps (0: only at its end).
    pub save_every: usize,
    /// Data type of the final checkpoint.
    pub dtype: safetensors::Dtype,
    /// Where to compute (a plain device; autodiff is added here).
    pub device: &'a Device,
}

impl TrainRun<'_> {
    fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.out.join("stages").join(stage.folder())
    }

    /// Runs every stage with steps, reporting through `observe`, and writes the final model
    /// to `out`. Returns the final model.
    pub fn run(self, observe: &mut dyn FnMut(Event)) -> Result<Clip> {
        let plan = self.plan;
        plan.validate()?;
        let spec = plan.arch.spec();
        let config = plan.arch.open_clip_config();
        let device = self.device.clone().autodiff();
        let init_name = self
            .init
            .as_ref()
            .map_or_else(|| "random".to_string(), |(_, name)| name.clone());
        let mut model = match &self.init {
            Some((model, _)) => model.clone(),
            None => {
                let mut model = Clip::new(&spec, &device);
                initialize(&mut model, plan.seed, &device);
                model
            }
        };
        let mut seen = BTreeSet::new();
        for stage in Stage::ALL {
            let options = plan.options(stage).clone();
            if options.steps == 0 {
                continue;
            }
            let dir = self.stage_dir(stage);
            let fingerprint = plan.fingerprint(stage, &init_name);
            let mut from_step = 0;
            if let Some(progress) = read_progress(&dir)?
                && progress.fingerprint == fingerprint
            {
                model = Checkpoint::open(&dir)?.load(&device)?;
                seen = progress.seen_tokens;
                if progress.steps_done >= options.steps {
                    observe(Event::Reused { stage });
                    continue;
                }
                from_step = progress.steps_done;
            }
            observe(Event::Started {
                stage,
                steps: options.steps,
                from_step,
            });
            let start = StageStart {
                spec: &spec,
                options: options.clone(),
                seed: plan.seed,
                step: from_step,
            };
            let mut trainer = stage_trainer(stage, model, start, plan.lit_pool);
            let save = |trainer: &dyn StageTrainer, steps_done: usize| -> Result<()> {
                let mut tokens = seen.clone();
                tokens.extend(trainer.seen_tokens());
                let progress = Progress {
                    fingerprint: fingerprint.clone(),
                    steps_done,
                    seen_tokens: tokens,
                };
                let model = trainer.model();
                atomic::write_folder(&dir, true, |staging| {
                    write_open_clip(&model, &config, safetensors::Dtype::F32, staging)?;
                    fs::write(
                        staging.join("progress.json"),
                        serde_json::to_vec_pretty(&progress)?,
                    )?;
                    Ok(())
                })
            };
            for _ in from_step..options.steps {
                let report = trainer.step();
                if !report.loss.is_finite() {
                    bail!(
                        "stage {} diverged at step {} (loss {}); try a lower --{}-lr",
                        stage.name(),
                        report.step,
                        report.loss,
                        stage.name()
                    );
                }
                observe(Event::Step {
                    stage,
                    report: &report,
                });
                if self.save_every > 0
                    && report.step.is_multiple_of(self.save_every)
                    && report.step < options.steps
                {
                    save(trainer.as_ref(), report.step)?;
                }
            }
            save(trainer.as_ref(), options.steps)?;
            seen.extend(trainer.seen_tokens());
            model = trainer.model();
            observe(Event::Finished { stage });
        }
        let model = if seen.is_empty() {
            model
        } else {
            without_unseen_tokens(model, &seen)
        };
        write_open_clip(&model, &config, self.dtype, self.out)?;
        Ok(model)
    }
}

/// The trainer of `stage` for `model`, starting at `start`; LiT encodes `lit_pool` scenes.
pub fn stage_trainer(
    stage: Stage,
    model: Clip,
    start: StageStart,
    lit_pool: usize,
) -> Box<dyn StageTrainer> {
    match stage {
        Stage::Attributes => Box::new(AttributeTrainer::new(model, start)),
        Stage::Lit => Box::new(LitTrainer::new(model, start, lit_pool)),
        Stage::Joint => Box::new(ContrastiveTrainer::new(model, start)),
    }
}

/// The progress file of a stage folder, if there is one.
fn read_progress(dir: &Path) -> Result<Option<Progress>> {
    let path = dir.join("progress.json");
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = crate::limits::read_file(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let progress = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{}: not a training progress file; remove the folder to train the stage again",
            path.display()
        )
    })?;
    Ok(Some(progress))
}
