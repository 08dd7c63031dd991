//! **GradDiff**: gradient ascent on the forget pictures, descent on what to keep.
//!
//! ```text
//! L_GradDiff = − mean_forget log p(yᵢ | xᵢ) + λ · mean_retain KL(p_orig(·|x) ‖ p(·|x))
//! ```
//!
//! The ascent is [`super::ga`]'s; the descent holds the zero-shot answers on retain pictures
//! (the user's retain set, or synthetic pictures of the head's other classes) to the original
//! model's, which is cross-entropy against the original answers up to a constant. The
//! CLIPErase paper finds it keeps more than GA but forgets less completely.

use serde::{Deserialize, Serialize};

use super::ga::{AscentOptions, AscentRun, ascent_help, ascent_preset};
use super::{MethodError, Preset, UnlearningMethod, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::unlearn::job::Method;

/// The GradDiff baseline.
pub struct GradDiff;

/// GradDiff's knobs: gradient ascent's and the retain term's.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct GradDiffOptions {
    /// λ, weight of the descent on retain pictures.
    pub retain_weight: f32,
    /// Retain pictures per step.
    pub retain_batch: usize,
    /// Everything GradDiff shares with gradient ascent.
    #[serde(flatten)]
    pub ascent: AscentOptions,
}

impl Default for GradDiffOptions {
    fn default() -> Self {
        Self {
            retain_weight: 1.0,
            retain_batch: 16,
            ascent: AscentOptions::default(),
        }
    }
}

impl UnlearningMethod for GradDiff {
    fn name(&self) -> &'static str {
        "graddiff"
    }

    fn title(&self) -> &'static str {
        "GradDiff (ascent on forget, descent on retain)"
    }

    fn summary(&self) -> &'static str {
        "Gradient ascent on pictures of the class while holding the answers on pictures of \
         everything else: forgets less bluntly than GA."
    }

    fn needs(&self) -> &'static str {
        "Pictures of the class (real or synthetic) and pictures to keep (the retain set, or \
         synthetic pictures of the other classes)."
    }

    fn defaults(&self) -> toml::Table {
        toml::Table::try_from(GradDiffOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        match key {
            "retain_weight" => "How strongly the answers on pictures to keep are held (λ).",
            "retain_batch" => "Pictures to keep per step.",
            other => ascent_help(other),
        }
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        ascent_preset(preset)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let options: GradDiffOptions = parse_options(self.name(), settings)?;
        Ok(DataNeeds {
            synthetic: options.ascent.synthetic,
            retain: options.retain_weight > 0.0,
            pairs: false,
        })
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        _seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options: GradDiffOptions = parse_options(self.name(), settings)?;
        Ok(Box::new(AscentRun::new(
            "graddiff",
            options.ascent,
            options.retain_weight,
            options.retain_batch,
            scenario,
        )))
    }
}
