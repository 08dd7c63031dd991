//! **SLUG-style single-layer update**: one gradient step on the one layer that matters most for
//! the class and least for the rest (after "Unlearning Targeted Information via Single Layer
//! Unlearning Gradients", Cai et al., 2024). A fast preset: no training loop.
//!
//! With `L_f = mean_forget log p(yᵢ | xᵢ)` (lowering it forgets) and
//! `L_r = − mean_retain Σ_c p_orig(c | x) log p(c | x)` (the retain pictures' cross-entropy
//! against the original answers), each layer `l` is scored by the ratio of gradient sizes
//!
//! ```text
//! r_l = mean|∂L_f/∂θ_l| / mean|∂L_r/∂θ_l|
//! ```
//!
//! over the weight matrices (norms and biases left out), and only the layer with the largest
//! `r_l` changes, by one step against `∂L_f/∂θ_l` sized
//! relative to the layer: `θ_l ← θ_l − λ · (mean|θ_l| / mean|∂L_f/∂θ_l|) · ∂L_f/∂θ_l`, so λ is
//! the change as a share of the layer's typical weight. λ is searched by bisection in log
//! space between `min_step` and `max_step`: each try
//! starts from the original weights and is judged on the forget (or verification) pictures;
//! the smallest λ that brings them below `stop_accuracy` is kept, since it leaves the most of
//! everything else. Every try is one iteration of the run, so its progress is visible.

use std::collections::{HashMap, HashSet};

use burn::module::ParamId;
use burn::optim::SgdConfig;
use serde::{Deserialize, Serialize};

use super::{MethodError, Preset, UnlearningMethod, parse_options, preset_table, shared_help};
use crate::clip::checkpoint::named_tensors;
use crate::clip::weights::Format;
use crate::clip::{Clip, VisionTower, host_values, index_tensor};
use crate::curation::{DataNeeds, Scenario};
use crate::unlearn::job::{Method, StepReport};
use crate::unlearn::params::{LayerInfo, gradient_magnitudes, layers, masked_step};
use crate::unlearn::synthetic::SyntheticOptions;
use crate::unlearn::toolkit::{
    Temperature, class_heads, forget_accuracy, zero_shot_log_probabilities,
};

/// The single-layer update.
pub struct Slug;

/// The knobs of the single-layer update.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct SlugOptions {
    /// Smallest step tried, as a share of the layer's mean |weight|.
    pub min_step: f64,
    /// Largest step tried, as a share of the layer's mean |weight|.
    pub max_step: f64,
    /// Bisection tries.
    pub searches: usize,
    /// The forget pictures count as forgotten below this accuracy.
    pub stop_accuracy: f64,
    /// Rank only the layers inside the residual blocks (and a ResNet's attention pool).
    pub blocks_only: bool,
    /// How forget pictures are synthesised when no real ones are given.
    pub synthetic: SyntheticOptions,
}

impl Default for SlugOptions {
    fn default() -> Self {
        Self {
            min_step: 1e-3,
            max_step: 2.0,
            searches: 10,
            stop_accuracy: 0.1,
            blocks_only: false,
            synthetic: SyntheticOptions::default(),
        }
    }
}

impl UnlearningMethod for Slug {
    fn name(&self) -> &'static str {
        "slug"
    }

    fn title(&self) -> &'static str {
        "SLUG (single-layer update)"
    }

    fn summary(&self) -> &'static str {
        "Finds the one layer whose gradient is largest for the class and smallest for \
         everything else, and takes one gradient step on it, as small as forgetting allows. \
         Takes seconds."
    }

    fn needs(&self) -> &'static str {
        "Pictures of the class (real or synthetic) and pictures to keep (the retain set, or \
         synthetic pictures of the other classes)."
    }

    fn defaults(&self) -> toml::Table {
        toml::Table::try_from(SlugOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        match key {
            "min_step" => {
                "Smallest step the search tries, as a share of the layer's typical weight."
            }
            "max_step" => {
                "Largest step the search tries, as a share of the layer's typical weight."
            }
            "searches" => "Step sizes tried (bisection), each judged on the forget pictures.",
            "stop_accuracy" => {
                "The class counts as forgotten once fewer than this fraction of its pictures are recognised."
            }
            "blocks_only" => {
                "Consider only layers inside the residual blocks, never the shared embeddings, norms and projections."
            }
            "max_steps" => "Ascent steps per synthetic picture before giving up.",
            "retain_per_class" => {
                "Synthetic pictures of each other class to rank layers against, when no retain set is given."
            }
            other => shared_help(other),
        }
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        let text = match preset {
            Preset::Gentle => "",
            Preset::Default | Preset::Aggressive => "[synthetic]\ncount = 32\n",
            Preset::Careful => "blocks_only = true\n[synthetic]\ncount = 32\n",
        };
        preset_table(text)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let options: SlugOptions = parse_options(self.name(), settings)?;
        if !(options.min_step > 0.0 && options.min_step < options.max_step) {
            return Err(MethodError::Settings {
                method: self.name(),
                problem: format!(
                    "min_step must be above 0 and below max_step, got {} and {}",
                    options.min_step, options.max_step
                ),
            });
        }
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
        _seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = parse_options(self.name(), settings)?;
        Ok(Box::new(SlugRun {
            options,
            scenario,
            layer: None,
            range: None,
            best: None,
        }))
    }
}

/// The layer a single-layer update changes.
struct ChosenLayer {
    /// Its parameter ids (three for a fused projection).
    ids: HashSet<ParamId>,
    /// Learning rate per unit of λ: mean |weight| over mean |forget gradient|.
    scale: f64,
}

/// A single-layer update in progress: the chosen layer, then the step-size search.
struct SlugRun {
    options: SlugOptions,
    scenario: Scenario,
    /// The chosen layer.
    layer: Option<ChosenLayer>,
    /// The bisection bracket `(low, high)` in log10 of the step size.
    range: Option<(f64, f64)>,
    /// The smallest step that forgot so far, with its model.
    best: Option<(f64, Clip)>,
}

impl SlugRun {
    /// The forget loss `L_f` (lowering it forgets) of `model`.
    fn forget_loss(&self, model: &Clip) -> burn::tensor::Tensor<1> {
        let heads = class_heads(model, &self.scenario);
        let images = self.scenario.images.clone().detach();
        let labels = index_tensor(&self.scenario.labels, &images.device());
        zero_shot_log_probabilities(model, images, heads, Temperature::Held)
            .gather(1, labels.unsqueeze_dim(1))
            .mean()
    }

    /// The layer with the largest forget-to-retain gradient ratio.
    fn choose_layer(&self, model: &Clip) -> Result<ChosenLayer, MethodError> {
        let forget = gradient_magnitudes(model, &self.forget_loss(model).backward());
        let retain = self
            .scenario
            .retain
            .as_ref()
            .ok_or_else(|| MethodError::Failed {
                method: "slug".into(),
                problem: "the scenario has no pictures to keep".into(),
            })?;
        let heads = class_heads(model, &self.scenario);
        let current = zero_shot_log_probabilities(
            model,
            retain.images.clone().detach(),
            heads,
            Temperature::Held,
        );
        let retain_loss = -(retain.original.clone().exp() * current).sum_dim(1).mean();
        let kept = gradient_magnitudes(model, &retain_loss.backward());
        let resnet = matches!(model.visual, VisionTower::ResNet(_));
        let all = layers(model);
        // Weight matrices only: a norm's or a bias's few values carry tiny gradients on both
        // sides, which makes their ratio large and their effect nil.
        let matrix = |l: &LayerInfo| {
            let key = l.checkpoint_key();
            l.numel >= 1024 && !key.ends_with("bias") && !key.contains("ln_") && !key.contains("bn")
        };
        let eligible = |l: &LayerInfo| {
            let in_block = l.checkpoint_key().contains("resblocks.") || l.is_attention_pool();
            matrix(l)
                && (!self.options.blocks_only || in_block)
                && !(resnet && l.key.starts_with("visual.") && !l.is_attention_pool())
        };
        let ratios: HashMap<&str, f64> = all
            .iter()
            .filter(|l| eligible(l))
            .filter_map(|l| {
                let key = l.checkpoint_key();
                let f = f64::from(*forget.get(key)?);
                let r = f64::from(*kept.get(key)?).max(1e-12);
                Some((key, f / r))
            })
            .collect();
        let (key, _) = ratios
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            .ok_or_else(|| MethodError::Failed {
                method: "slug".into(),
                problem: "no layer has a gradient for the forget pictures".into(),
            })?;
        let ids = all
            .iter()
            .filter(|l| l.checkpoint_key() == *key)
            .map(|l| l.id)
            .collect();
        let weights = &named_tensors(model, Format::OpenClip, None)[*key].1;
        let weight =
            weights.iter().map(|w| f64::from(w.abs())).sum::<f64>() / weights.len().max(1) as f64;
        let scale = weight / f64::from(forget[*key]).max(1e-12);
        tracing::debug!(layer = key, scale, "single-layer update");
        Ok(ChosenLayer { ids, scale })
    }
}

impl Method for SlugRun {
    fn name(&self) -> &str {
        "slug"
    }

    fn max_steps(&self) -> usize {
        self.options.searches.max(1)
    }

    fn step(&mut self, _model: Clip, original: &Clip) -> Result<(Clip, StepReport), MethodError> {
        if self.layer.is_none() {
            self.layer = Some(self.choose_layer(original)?);
        }
        let (low, high) = *self
            .range
            .get_or_insert((self.options.min_step.log10(), self.options.max_step.log10()));
        let log_step = (low + high) / 2.0;
        let step = 10f64.powf(log_step);
        let layer = self.layer.as_ref().expect("chosen above");
        let loss = self.forget_loss(original);
        let value = host_values(loss.clone().detach())[0];
        let mut sgd = SgdConfig::new().init();
        let model = masked_step(
            &mut sgd,
            step * layer.scale,
            original.clone(),
            loss.backward(),
            &layer.ids,
        );
        let accuracy = forget_accuracy(&model, &self.scenario);
        let forgot = accuracy < self.options.stop_accuracy;
        self.range = Some(if forgot {
            (low, log_step)
        } else {
            (log_step, high)
        });
        if forgot && self.best.as_ref().is_none_or(|(best, _)| step < *best) {
            self.best = Some((step, model.clone()));
        }
        Ok((
            model,
            StepReport {
                losses: vec![("slug".into(), value), ("step size".into(), step as f32)],
                forget_accuracy: Some(accuracy),
                retain_accuracy: None,
                finished: false,
            },
        ))
    }

    fn best(&mut self) -> Option<Clip> {
        self.best.take().map(|(_, model)| model)
    }
}
