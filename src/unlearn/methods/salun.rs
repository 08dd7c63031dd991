//! **SalUn**: saliency-based unlearning (Fan et al., ICLR 2024).
//!
//! First a weight saliency mask from the forget pictures' gradient under the starting model,
//! keeping the share `γ` of weights with the largest magnitude (one threshold over the whole
//! model):
//!
//! ```text
//! m = 1( |∇_θ ℓ_f(θ₀)| ≥ τ_γ ),    ℓ_f = − mean_forget log p(yᵢ | xᵢ)
//! ```
//!
//! then [`super::amns_retain`]'s random relabelling with a retain term, where only the salient
//! weights move:
//!
//! ```text
//! θ ← θ − η · m ⊙ ∇_θ [ − mean_forget log p(rᵢ | xᵢ) + λ · mean_retain KL(p_orig ‖ p) ]
//! ```
//!
//! `rᵢ` is a random class other than `yᵢ`, drawn afresh every step. The paper keeps half the
//! weights (`saliency = 0.5`); the rest stay bit-identical while weight decay is off.

use serde::{Deserialize, Serialize};

use super::baseline::{BaselineRun, Objective, RetainedOptions, baseline_preset, retained_help};
use super::{MethodError, Preset, UnlearningMethod, defaults_of, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::data::shapes::Rng;
use crate::unlearn::job::Method;

/// The SalUn method.
pub struct SalUn;

/// SalUn's knobs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct SalUnOptions {
    /// γ, share of the weights (0–1] the mask lets change.
    pub saliency: f32,
    /// The random-relabelling baseline's knobs, retain term included.
    #[serde(flatten)]
    pub retained: RetainedOptions,
}

impl Default for SalUnOptions {
    fn default() -> Self {
        Self {
            saliency: 0.5,
            retained: RetainedOptions::default(),
        }
    }
}

impl SalUn {
    fn options(&self, settings: &toml::Table) -> Result<SalUnOptions, MethodError> {
        parse_options(self.name(), settings)
    }
}

impl UnlearningMethod for SalUn {
    fn name(&self) -> &'static str {
        "salun"
    }

    fn title(&self) -> &'static str {
        "SalUn (saliency mask + random labels)"
    }

    fn summary(&self) -> &'static str {
        "Finds the weights that matter most for the class to forget and changes only those, \
         teaching a random wrong class for its pictures while holding the answers on pictures \
         of everything else."
    }

    fn needs(&self) -> &'static str {
        "Pictures of the class (real or synthetic) and pictures to keep (the retain set, or \
         synthetic pictures of the other classes)."
    }

    fn defaults(&self) -> toml::Table {
        defaults_of::<SalUnOptions>()
    }

    fn help(&self, key: &str) -> &'static str {
        match key {
            "saliency" => {
                "Share of the weights (0–1) allowed to change: those whose gradient on the \
                 pictures to forget is largest."
            }
            other => retained_help(other),
        }
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        baseline_preset(preset)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let options = self.options(settings)?;
        Ok(options
            .retained
            .base
            .data_needs(options.retained.retain_weight > 0.0))
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = self.options(settings)?;
        let retained = options.retained;
        Ok(Box::new(
            BaselineRun::new(
                self.name(),
                Objective::RandomLabels(Rng::new(seed)),
                retained.base,
                Some((retained.retain_weight, retained.retain_batch)),
                scenario,
            )
            .with_saliency(options.saliency),
        ))
    }
}
