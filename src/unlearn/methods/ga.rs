//! **GA**, gradient ascent: the simplest unlearning baseline.
//!
//! Raises the zero-shot classification loss of the forget pictures, in both towers and every
//! layer:
//!
//! ```text
//! L_GA = − mean_forget log p(yᵢ | xᵢ),   p = softmax_c( s · f(xᵢ) · g(t_c) )
//! ```
//!
//! with `f`, `g` the normalised image and class-prompt embeddings and `s` the model's (held)
//! temperature. Nothing holds the rest of the model in place, so it over-forgets: the CLIPErase
//! paper reports retain accuracy falling with it. [`super::graddiff`] adds a retain term.
//! Stops once the forget pictures (or the verification pictures) are recognised below
//! `stop_accuracy`.

use burn::optim::{GradientsParams, ModuleOptimizer};
use serde::{Deserialize, Serialize};

use super::{MethodError, Preset, UnlearningMethod, parse_options};
use crate::clip::{Clip, host_values, index_tensor};
use crate::curation::{DataNeeds, Scenario};
use crate::train::clip_adam;
use crate::unlearn::job::{Method, StepReport};
use crate::unlearn::synthetic::SyntheticOptions;
use crate::unlearn::toolkit::{
    Temperature, class_heads, forget_accuracy, window, zero_shot_log_probabilities,
};

/// The gradient-ascent baseline.
pub struct GradientAscent;

/// The knobs of gradient ascent (and of GradDiff, which adds its retain weight).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AscentOptions {
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Forget pictures per step.
    pub batch: usize,
    /// Give up after this many steps.
    pub max_steps: usize,
    /// Stop once the model recognises fewer than this share of the forget pictures.
    pub stop_accuracy: f64,
    /// How forget pictures are synthesised when no real ones are given.
    pub synthetic: SyntheticOptions,
}

impl Default for AscentOptions {
    fn default() -> Self {
        Self {
            learning_rate: 1e-5,
            weight_decay: 0.0,
            batch: 8,
            max_steps: 100,
            stop_accuracy: 0.1,
            synthetic: SyntheticOptions::default(),
        }
    }
}

/// What the settings shared by gradient ascent and GradDiff mean.
pub fn ascent_help(key: &str) -> &'static str {
    match key {
        "learning_rate" => "How big each update of the weights is (Adam's step size).",
        "weight_decay" => "How strongly weights are pulled towards zero at each update.",
        "batch" => "Forget pictures per step.",
        "max_steps" => "Give up after this many steps.",
        "stop_accuracy" => {
            "Stop once the model recognises fewer than this fraction of the forget pictures."
        }
        "synthetic" => {
            "How pictures of the class are synthesised from the model when no real ones are given."
        }
        "count" => "Number of synthetic pictures.",
        "threshold" => "Probability of the class each synthetic picture must reach.",
        "step_size" => "Size of each pixel update while synthesising.",
        "retain_per_class" => {
            "Synthetic pictures of each other class to hold in place, when no retain set is given."
        }
        _ => "",
    }
}

/// The presets shared by gradient ascent and GradDiff.
pub fn ascent_preset(preset: Preset) -> toml::Table {
    let text = match preset {
        Preset::Gentle => "",
        Preset::Default => {
            "learning_rate = 1e-4\nbatch = 4\nmax_steps = 40\n[synthetic]\ncount = 32\n"
        }
        Preset::Careful => {
            "learning_rate = 3e-5\nbatch = 4\nmax_steps = 60\n[synthetic]\ncount = 32\n"
        }
        Preset::Aggressive => {
            "learning_rate = 3e-4\nbatch = 4\nmax_steps = 60\nstop_accuracy = 0.05\n[synthetic]\ncount = 32\n"
        }
    };
    text.parse().expect("presets are valid TOML")
}

impl UnlearningMethod for GradientAscent {
    fn name(&self) -> &'static str {
        "ga"
    }

    fn title(&self) -> &'static str {
        "GA (gradient ascent baseline)"
    }

    fn summary(&self) -> &'static str {
        "Makes the model as wrong as possible about pictures of the class, everywhere in the \
         model. Fast and blunt: other classes usually suffer."
    }

    fn needs(&self) -> &'static str {
        "Pictures of the class: real ones if given, otherwise synthetic."
    }

    fn defaults(&self) -> toml::Table {
        toml::Table::try_from(AscentOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        ascent_help(key)
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        ascent_preset(preset)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let options: AscentOptions = parse_options(self.name(), settings)?;
        Ok(DataNeeds {
            synthetic: options.synthetic,
            retain: false,
            pairs: false,
        })
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        _seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = parse_options(self.name(), settings)?;
        Ok(Box::new(AscentRun::new("ga", options, 0.0, 16, scenario)))
    }
}

/// A gradient-ascent run, with an optional retain term (GradDiff).
pub struct AscentRun {
    name: &'static str,
    options: AscentOptions,
    retain_weight: f32,
    retain_batch: usize,
    scenario: Scenario,
    optimizer: ModuleOptimizer,
    step: usize,
}

impl AscentRun {
    /// A run named `name` on `scenario`; with a `retain_weight` above 0 the scenario's retain
    /// images are held to the original answers, `retain_batch` per step.
    pub fn new(
        name: &'static str,
        options: AscentOptions,
        retain_weight: f32,
        retain_batch: usize,
        scenario: Scenario,
    ) -> Self {
        Self {
            name,
            optimizer: clip_adam(options.weight_decay),
            options,
            retain_weight,
            retain_batch,
            scenario,
            step: 0,
        }
    }
}

impl Method for AscentRun {
    fn name(&self) -> &str {
        self.name
    }

    fn max_steps(&self) -> usize {
        self.options.max_steps
    }

    fn step(&mut self, model: Clip, _original: &Clip) -> Result<(Clip, StepReport), MethodError> {
        let (start, size) = window(
            self.step,
            self.options.batch,
            self.scenario.images.dims()[0],
        );
        let images = self.scenario.images.clone().narrow(0, start, size).detach();
        let labels = index_tensor(&self.scenario.labels[start..start + size], &images.device());
        let heads = class_heads(&model, &self.scenario);
        let log_p = zero_shot_log_probabilities(&model, images, heads.clone(), Temperature::Held);
        let ascent = log_p.gather(1, labels.unsqueeze_dim(1)).mean();
        let mut losses = vec![(
            self.name.to_string(),
            -host_values(ascent.clone().detach())[0],
        )];
        let mut loss = ascent;
        let mut retain_accuracy = None;
        if let Some(retain) = self
            .scenario
            .retain
            .as_ref()
            .filter(|_| self.retain_weight > 0.0)
        {
            let term = retain.term(&model, heads, self.step, self.retain_batch);
            losses.push(("retain".into(), host_values(term.loss.clone().detach())[0]));
            retain_accuracy = Some(term.agreement);
            loss = loss + term.loss * self.retain_weight;
        }
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let model = self
            .optimizer
            .step(self.options.learning_rate, model, gradients);
        self.step += 1;
        let accuracy = forget_accuracy(&model, &self.scenario);
        Ok((
            model,
            StepReport {
                losses,
                forget_accuracy: Some(accuracy),
                retain_accuracy,
                finished: accuracy < self.options.stop_accuracy,
            },
        ))
    }
}
