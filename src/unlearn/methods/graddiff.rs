//! **GradDiff**: gradient ascent on the forget pictures, descent on what to keep.
//!
//! ```text
//! L_GradDiff = mean_forget log p(yᵢ | xᵢ) + λ · mean_retain KL(p_orig(·|x) ‖ p(·|x))
//! ```
//!
//! The ascent is [`super::ga`]'s; the descent holds the zero-shot answers on retain pictures
//! (the user's retain set, or synthetic pictures of the head's other classes) to the original
//! model's, which is cross-entropy against the original answers up to a constant. The
//! CLIPErase paper finds it keeps more than GA but forgets less completely.

use super::baseline::{BaselineRun, Objective, RetainedOptions, baseline_preset, retained_help};
use super::{MethodError, Preset, UnlearningMethod, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::unlearn::job::Method;

/// The GradDiff baseline.
pub struct GradDiff;

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
        toml::Table::try_from(RetainedOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        retained_help(key)
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        baseline_preset(preset)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        let options: RetainedOptions = parse_options(self.name(), settings)?;
        Ok(options.base.data_needs(options.retain_weight > 0.0))
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        _seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options: RetainedOptions = parse_options(self.name(), settings)?;
        Ok(Box::new(BaselineRun::new(
            "graddiff",
            Objective::Ascent,
            options.base,
            Some((options.retain_weight, options.retain_batch)),
            scenario,
        )))
    }
}
