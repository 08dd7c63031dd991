//! **EMMN**: error-maximising and error-minimising noise, zero-shot unlearning (Chundawat et
//! al., IEEE TIFS 2023, after Tarun et al.'s UNSIR). No real picture of anything is needed.
//!
//! 1. *Noise*: starting from random pixels `N`, one noise picture per forget picture is
//!    pushed to be as wrong as possible about the class to forget, with an L2 penalty that
//!    keeps it small:
//!
//!    ```text
//!    N ← N − η_N · normalise( ∇_N [ log p(y_f | N) + λ_N · mean(N²) ] )
//!    ```
//!
//!    The error-minimising noise for the classes to keep is the retain set: the user's
//!    pictures, or pictures synthesised from the model for every other class of the head
//!    (gradient ascent on their own class, as Lip makes its forget pictures).
//! 2. *Impair*: the model is trained to call the error-maximising noise the forgotten class,
//!    which tears that class's region apart, while the answers on the retain pictures are held:
//!
//!    ```text
//!    L_impair = − mean_noise log p(y_f | N) + λ · mean_retain KL(p_orig ‖ p)
//!    ```
//!
//!    It ends after `impair_steps` or once the forget pictures fall below `stop_accuracy`.
//! 3. *Repair*: `repair_steps` on the retain term alone, to win back the other classes.
//!
//! Every weight of both towers changes in impair and repair. The forget pictures (real if
//! given, otherwise synthetic) are only used to judge when to stop.

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::baseline::retained_help;
use super::{MethodError, Preset, UnlearningMethod, defaults_of, parse_options, preset_table};
use crate::clip::{Clip, host_values, index_tensor};
use crate::curation::{DataNeeds, Scenario};
use crate::train::clip_adam;
use crate::unlearn::job::{Method, StepReport};
use crate::unlearn::synthetic::{SyntheticOptions, normalised_step, random_pixels};
use crate::unlearn::toolkit::{
    Temperature, class_heads, forget_accuracy, window, zero_shot_log_probabilities,
};

/// The EMMN method.
pub struct Emmn;

/// EMMN's knobs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct EmmnOptions {
    /// Adam learning rate of impair and repair.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Noise pictures per impair step (and per chunk while making the noise).
    pub batch: usize,
    /// Steps making the error-maximising noise.
    pub noise_steps: usize,
    /// Size of each noise update, in normalised pixel units per unit of mean |gradient|.
    pub noise_step_size: f32,
    /// λ_N, weight of the L2 penalty keeping the noise small.
    pub noise_weight: f32,
    /// Most impair steps.
    pub impair_steps: usize,
    /// Repair steps on the retain pictures alone.
    pub repair_steps: usize,
    /// λ, weight of holding the answers on retain pictures.
    pub retain_weight: f32,
    /// Retain pictures per step.
    pub retain_batch: usize,
    /// Impair ends once the model recognises fewer than this share of the forget pictures.
    pub stop_accuracy: f64,
    /// How forget pictures (to judge the stop) and retain pictures are synthesised when no
    /// real ones are given.
    pub synthetic: SyntheticOptions,
}

impl Default for EmmnOptions {
    fn default() -> Self {
        Self {
            learning_rate: 1e-5,
            weight_decay: 0.0,
            batch: 8,
            noise_steps: 20,
            noise_step_size: 0.05,
            noise_weight: 0.1,
            impair_steps: 40,
            repair_steps: 10,
            retain_weight: 1.0,
            retain_batch: 16,
            stop_accuracy: 0.1,
            synthetic: SyntheticOptions::default(),
        }
    }
}

impl Emmn {
    fn options(&self, settings: &toml::Table) -> Result<EmmnOptions, MethodError> {
        parse_options(self.name(), settings)
    }
}

impl UnlearningMethod for Emmn {
    fn name(&self) -> &'static str {
        "emmn"
    }

    fn title(&self) -> &'static str {
        "EMMN (error-maximising noise, zero-shot)"
    }

    fn summary(&self) -> &'static str {
        "Makes noise the model finds as unlike the class as possible, teaches the model to call \
         that noise the class (which breaks the class), then repairs the other classes on \
         pictures of them. Needs no real pictures."
    }

    fn needs(&self) -> &'static str {
        "Nothing real: noise is made from the model; pictures to keep are synthesised when no \
         retain set is given."
    }

    fn defaults(&self) -> toml::Table {
        defaults_of::<EmmnOptions>()
    }

    fn help(&self, key: &str) -> &'static str {
        match key {
            "batch" => "Noise pictures per impair step.",
            "noise_steps" => "Steps making the noise that is most unlike the class.",
            "noise_step_size" => "Size of each noise update.",
            "noise_weight" => "How strongly the noise is kept small (λ_N).",
            "impair_steps" => "Most steps teaching the model to call the noise the class.",
            "repair_steps" => "Steps afterwards on the pictures to keep alone.",
            "stop_accuracy" => {
                "Impair ends once the model recognises fewer than this fraction of the forget pictures."
            }
            other => retained_help(other),
        }
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        let text = match preset {
            Preset::Gentle => "",
            Preset::Default => {
                "learning_rate = 1e-4\nbatch = 4\nimpair_steps = 40\n[synthetic]\ncount = 32\n"
            }
            Preset::Careful => {
                "learning_rate = 3e-5\nbatch = 4\nimpair_steps = 60\nrepair_steps = 20\n[synthetic]\ncount = 32\n"
            }
            Preset::Aggressive => {
                "learning_rate = 3e-4\nbatch = 4\nimpair_steps = 60\nstop_accuracy = 0.05\n[synthetic]\ncount = 32\n"
            }
        };
        preset_table(text)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let options = self.options(settings)?;
        Ok(DataNeeds {
            synthetic: options.synthetic,
            retain: true,
            pairs: false,
        })
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = self.options(settings)?;
        let labels = scenario.labels.clone();
        let [_, channels, height, width] = scenario.images.dims();
        let plane = channels * height * width;
        let pixels = random_pixels(seed ^ 0xe33e, labels.len() * plane);
        Ok(Box::new(EmmnRun {
            optimizer: clip_adam(options.weight_decay),
            noise: Noise {
                pixels,
                shape: [channels, height, width],
                labels,
            },
            options,
            scenario,
            phase: Phase::Noise,
            step: 0,
            phase_step: 0,
        }))
    }
}

/// The error-maximising noise, kept on the host between updates.
struct Noise {
    /// Normalised pixels, image after image.
    pixels: Vec<f32>,
    /// `[channels, height, width]` of one picture.
    shape: [usize; 3],
    /// The class each noise picture is made against.
    labels: Vec<usize>,
}

impl Noise {
    fn plane(&self) -> usize {
        self.shape.iter().product()
    }

    /// Pictures `start..start + size` as a tensor on the device of `like`.
    fn tensor(&self, start: usize, size: usize, like: &Tensor<4>) -> Tensor<4> {
        let plane = self.plane();
        let [c, h, w] = self.shape;
        Tensor::from_data(
            TensorData::new(
                self.pixels[start * plane..(start + size) * plane].to_vec(),
                [size, c, h, w],
            ),
            &like.device(),
        )
    }

    /// One update of every noise picture, chunk by chunk; returns their mean cross-entropy
    /// for the class they are made against (higher is more wrong).
    fn update(
        &mut self,
        model: &Clip,
        heads: Tensor<2>,
        options: &EmmnOptions,
        like: &Tensor<4>,
    ) -> f32 {
        let count = self.labels.len();
        let plane = self.plane();
        let mut cross_entropy = 0.0;
        for start in (0..count).step_by(options.batch) {
            let size = options.batch.min(count - start);
            let input = self.tensor(start, size, like).require_grad();
            let labels = index_tensor(&self.labels[start..start + size], &like.device());
            let log_p =
                zero_shot_log_probabilities(model, input.clone(), heads.clone(), Temperature::Held)
                    .gather(1, labels.unsqueeze_dim(1));
            cross_entropy -= host_values(log_p.clone().sum().detach())[0];
            let penalty = input.clone().powf_scalar(2.0).mean() * options.noise_weight;
            let gradients = (log_p.mean() + penalty).backward();
            let gradient = host_values(input.grad(&gradients).expect("noise requires gradients"));
            let chunk = &mut self.pixels[start * plane..(start + size) * plane];
            for (image, grad) in chunk.chunks_mut(plane).zip(gradient.chunks(plane)) {
                normalised_step(image, grad, -options.noise_step_size);
            }
        }
        cross_entropy / count.max(1) as f32
    }
}

/// Where an EMMN run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Noise,
    Impair,
    Repair,
}

/// An EMMN run in progress.
struct EmmnRun {
    options: EmmnOptions,
    scenario: Scenario,
    noise: Noise,
    optimizer: ModuleOptimizer,
    phase: Phase,
    /// Steps taken in all.
    step: usize,
    /// Steps taken in the current phase.
    phase_step: usize,
}

impl EmmnRun {
    /// Moves on to `phase`.
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_step = 0;
    }

    /// One impair or repair update.
    fn train(&mut self, model: Clip) -> Result<(Clip, StepReport), MethodError> {
        let heads = class_heads(&model, &self.scenario);
        let retain = self.scenario.retain.as_ref().ok_or(MethodError::Failed {
            method: "emmn".into(),
            problem: "the scenario has no pictures to keep".into(),
        })?;
        let term = retain.term(&model, heads.clone(), self.step, self.options.retain_batch);
        let mut losses = vec![(
            "retain".to_string(),
            host_values(term.loss.clone().detach())[0],
        )];
        let mut loss = term.loss * self.options.retain_weight;
        if self.phase == Phase::Impair {
            let (start, size) =
                window(self.phase_step, self.options.batch, self.noise.labels.len());
            let noise = self.noise.tensor(start, size, &self.scenario.images);
            let labels = index_tensor(&self.noise.labels[start..start + size], &noise.device());
            let impair = -zero_shot_log_probabilities(&model, noise, heads, Temperature::Held)
                .gather(1, labels.unsqueeze_dim(1))
                .mean();
            losses.insert(
                0,
                ("impair".into(), host_values(impair.clone().detach())[0]),
            );
            loss = impair + loss;
        }
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let model = self
            .optimizer
            .step(self.options.learning_rate, model, gradients);
        let accuracy = forget_accuracy(&model, &self.scenario);
        self.phase_step += 1;
        let finished = match self.phase {
            Phase::Impair
                if accuracy < self.options.stop_accuracy
                    || self.phase_step >= self.options.impair_steps =>
            {
                self.enter(Phase::Repair);
                self.options.repair_steps == 0
            }
            Phase::Repair => self.phase_step >= self.options.repair_steps,
            _ => false,
        };
        Ok((
            model,
            StepReport {
                losses,
                forget_accuracy: Some(accuracy),
                retain_accuracy: Some(term.agreement),
                finished,
            },
        ))
    }
}

impl Method for EmmnRun {
    fn name(&self) -> &str {
        "emmn"
    }

    fn max_steps(&self) -> usize {
        self.options.noise_steps + self.options.impair_steps + self.options.repair_steps
    }

    fn step(&mut self, model: Clip, _original: &Clip) -> Result<(Clip, StepReport), MethodError> {
        if self.phase == Phase::Noise && self.phase_step >= self.options.noise_steps {
            self.enter(Phase::Impair);
        }
        let result = if self.phase == Phase::Noise {
            let heads = class_heads(&model, &self.scenario).detach();
            let cross_entropy =
                self.noise
                    .update(&model, heads, &self.options, &self.scenario.images);
            self.phase_step += 1;
            Ok((
                model,
                StepReport {
                    losses: vec![("noise".into(), cross_entropy)],
                    forget_accuracy: None,
                    retain_accuracy: None,
                    finished: false,
                },
            ))
        } else {
            if self.phase == Phase::Impair && self.options.impair_steps == 0 {
                self.enter(Phase::Repair);
            }
            self.train(model)
        };
        self.step += 1;
        result
    }
}
