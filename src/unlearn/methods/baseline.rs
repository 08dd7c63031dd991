//! What the classification baselines share (gradient ascent, GradDiff, Amnesiac,
//! AmnsRetain, SalUn): their knobs, presets, their registry entry, and one loop that changes
//! the weights of both towers with a zero-shot classification objective on the forget
//! pictures, optionally holding the answers on retain pictures and optionally only the
//! weights a saliency mask lets through, and stops once the forget (or verification)
//! pictures are no longer recognised.

use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::{
    MethodError, Preset, UnlearningMethod, defaults_of, parse_options, preset_table, shared_help,
};
use crate::clip::{Clip, host_values, index_tensor};
use crate::curation::{DataNeeds, Scenario};
use crate::data::shapes::Rng;
use crate::train::clip_adam;
use crate::unlearn::job::{Method, StepReport};
use crate::unlearn::params::ElementMask;
use crate::unlearn::synthetic::SyntheticOptions;
use crate::unlearn::toolkit::{
    Temperature, class_heads, forget_accuracy, window, zero_shot_log_probabilities,
};

/// The knobs every classification baseline has.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct BaselineOptions {
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

impl Default for BaselineOptions {
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

/// What the settings of the classification baselines mean.
pub fn baseline_help(key: &str) -> &'static str {
    match key {
        "batch" => "Forget pictures per step.",
        "max_steps" => "Give up after this many steps.",
        "stop_accuracy" => {
            "Stop once the model recognises fewer than this fraction of the forget pictures."
        }
        "retain_per_class" => {
            "Synthetic pictures of each other class to hold in place, when no retain set is given."
        }
        other => shared_help(other),
    }
}

/// The presets of the classification baselines.
pub fn baseline_preset(preset: Preset) -> toml::Table {
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
    preset_table(text)
}

impl BaselineOptions {
    /// What a baseline with these knobs asks of the scenario.
    pub fn data_needs(&self, retain: bool) -> DataNeeds {
        DataNeeds {
            synthetic: self.synthetic.clone(),
            retain,
            pairs: false,
        }
    }
}

/// The knobs of a baseline with a retain term (GradDiff, AmnsRetain).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct RetainedOptions {
    /// λ, weight of holding the answers on retain pictures.
    pub retain_weight: f32,
    /// Retain pictures per step.
    pub retain_batch: usize,
    /// Everything the baseline shares with the others.
    #[serde(flatten)]
    pub base: BaselineOptions,
}

impl Default for RetainedOptions {
    fn default() -> Self {
        Self {
            retain_weight: 1.0,
            retain_batch: 16,
            base: BaselineOptions::default(),
        }
    }
}

/// What the settings of a baseline with a retain term mean.
pub fn retained_help(key: &str) -> &'static str {
    match key {
        "retain_weight" => "How strongly the answers on pictures to keep are held (λ).",
        "retain_batch" => "Pictures to keep per step.",
        other => baseline_help(other),
    }
}

/// A classification baseline as the registry lists it: its words, its objective on the forget
/// pictures, and whether it holds retain pictures (then its knobs are [`RetainedOptions`],
/// otherwise [`BaselineOptions`]).
pub struct ClassificationBaseline {
    /// Name used in recipes.
    pub name: &'static str,
    /// Display name.
    pub title: &'static str,
    /// What it does, in plain words.
    pub summary: &'static str,
    /// What data it needs.
    pub needs: &'static str,
    /// What it does with the forget pictures.
    pub objective: ObjectiveKind,
    /// Whether it has a retain term.
    pub retained: bool,
}

/// Which objective a baseline pursues on the forget pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectiveKind {
    /// Gradient ascent on the cross-entropy.
    Ascent,
    /// A random wrong class per picture.
    RandomLabels,
}

impl UnlearningMethod for ClassificationBaseline {
    fn name(&self) -> &'static str {
        self.name
    }

    fn title(&self) -> &'static str {
        self.title
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    fn needs(&self) -> &'static str {
        self.needs
    }

    fn defaults(&self) -> toml::Table {
        if self.retained {
            defaults_of::<RetainedOptions>()
        } else {
            defaults_of::<BaselineOptions>()
        }
    }

    fn help(&self, key: &str) -> &'static str {
        retained_help(key)
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        baseline_preset(preset)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let (options, retain) = self.options(settings)?;
        Ok(options.data_needs(retain.is_some_and(|(weight, _)| weight > 0.0)))
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let (options, retain) = self.options(settings)?;
        let objective = match self.objective {
            ObjectiveKind::Ascent => Objective::Ascent,
            ObjectiveKind::RandomLabels => Objective::RandomLabels(Rng::new(seed)),
        };
        Ok(Box::new(BaselineRun::new(
            self.name, objective, options, retain, scenario,
        )))
    }
}

impl ClassificationBaseline {
    /// The baseline's knobs and, with a retain term, its `(weight, batch)`.
    fn options(
        &self,
        settings: &toml::Table,
    ) -> Result<(BaselineOptions, Option<(f32, usize)>), MethodError> {
        if self.retained {
            let options: RetainedOptions = parse_options(self.name, settings)?;
            Ok((
                options.base,
                Some((options.retain_weight, options.retain_batch)),
            ))
        } else {
            Ok((parse_options(self.name, settings)?, None))
        }
    }
}

/// What a baseline does with the forget pictures, with its state.
pub enum Objective {
    /// Lower the probability of their class (gradient ascent on the cross-entropy).
    Ascent,
    /// Teach a random other class for each picture, drawn afresh every step (Amnesiac).
    RandomLabels(Rng),
}

/// A baseline run: its objective on the forget pictures and an optional retain term.
pub struct BaselineRun {
    name: &'static str,
    objective: Objective,
    options: BaselineOptions,
    /// `(weight, batch)` of the retain term, when there is one.
    retain: Option<(f32, usize)>,
    scenario: Scenario,
    optimizer: ModuleOptimizer,
    saliency: Saliency,
    step: usize,
}

/// Which weights a baseline may change.
enum Saliency {
    /// Every weight of both towers.
    All,
    /// The given share of weights with the largest forget gradient, chosen at the first step.
    Pending(f32),
    /// The weights chosen at the first step.
    Masked(ElementMask),
}

impl BaselineRun {
    /// A run named `name` pursuing `objective` on `scenario`; with `retain` (weight and batch)
    /// the scenario's retain images are held to the original answers.
    pub fn new(
        name: &'static str,
        objective: Objective,
        options: BaselineOptions,
        retain: Option<(f32, usize)>,
        scenario: Scenario,
    ) -> Self {
        Self {
            name,
            objective,
            optimizer: clip_adam(options.weight_decay),
            options,
            retain,
            scenario,
            saliency: Saliency::All,
            step: 0,
        }
    }

    /// The same run, changing only the `share` of weights most salient to forgetting: those
    /// with the largest |∇ℓ_f|, the gradient of the forget pictures' cross-entropy under
    /// the starting model (SalUn).
    pub fn with_saliency(mut self, share: f32) -> Self {
        self.saliency = Saliency::Pending(share);
        self
    }

    /// ∇ℓ_f over every forget picture, accumulated batch by batch.
    fn forget_gradient(&self, model: &Clip) -> GradientsParams {
        let count = self.scenario.images.dims()[0];
        let heads = class_heads(model, &self.scenario).detach();
        let mut accumulator = GradientsAccumulator::new();
        for start in (0..count).step_by(self.options.batch.max(1)) {
            let size = self.options.batch.max(1).min(count - start);
            let images = self.scenario.images.clone().narrow(0, start, size).detach();
            let labels = &self.scenario.labels[start..start + size];
            let log_p =
                zero_shot_log_probabilities(model, images, heads.clone(), Temperature::Held);
            let device = log_p.device();
            let cross_entropy = -log_p
                .gather(1, index_tensor(labels, &device).unsqueeze_dim(1))
                .sum()
                / count as f32;
            accumulator.accumulate(
                model,
                GradientsParams::from_grads(cross_entropy.backward(), model),
            );
        }
        accumulator.grads()
    }

    /// `gradients` restricted to the weights the run may change (choosing them first, at the
    /// first step of a run with a saliency mask).
    fn allowed(&mut self, model: &Clip, gradients: GradientsParams) -> GradientsParams {
        if let Saliency::Pending(share) = self.saliency {
            let mask = ElementMask::largest(model, &self.forget_gradient(model), share);
            tracing::info!(share = mask.kept_share(), "saliency mask chosen");
            self.saliency = Saliency::Masked(mask);
        }
        match &self.saliency {
            Saliency::Masked(mask) => mask.apply(model, gradients),
            _ => gradients,
        }
    }

    /// The objective's loss on forget pictures with log-probabilities `log_p` and labels
    /// `labels`.
    fn forget_loss(&mut self, log_p: Tensor<2>, labels: &[usize]) -> Tensor<1> {
        let device = log_p.device();
        match &mut self.objective {
            Objective::Ascent => log_p
                .gather(1, index_tensor(labels, &device).unsqueeze_dim(1))
                .mean(),
            Objective::RandomLabels(rng) => {
                let classes = log_p.dims()[1];
                let wrong: Vec<usize> = labels
                    .iter()
                    .map(|&label| (label + 1 + rng.below(classes.max(2) - 1)) % classes)
                    .collect();
                -log_p
                    .gather(1, index_tensor(&wrong, &device).unsqueeze_dim(1))
                    .mean()
            }
        }
    }
}

impl Method for BaselineRun {
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
        let labels = self.scenario.labels[start..start + size].to_vec();
        let heads = class_heads(&model, &self.scenario);
        let log_p = zero_shot_log_probabilities(&model, images, heads.clone(), Temperature::Held);
        let forget = self.forget_loss(log_p, &labels);
        let mut losses = vec![(
            self.name.to_string(),
            host_values(forget.clone().detach())[0],
        )];
        let mut loss = forget;
        let mut retain_accuracy = None;
        if let (Some((weight, batch)), Some(retain)) = (self.retain, self.scenario.retain.as_ref())
        {
            let term = retain.term(&model, heads, self.step, batch);
            losses.push(("retain".into(), host_values(term.loss.clone().detach())[0]));
            retain_accuracy = Some(term.agreement);
            loss = loss + term.loss * weight;
        }
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        let gradients = self.allowed(&model, gradients);
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
