//! **AmnsRetain**: [`super::amnesiac`]'s random relabelling of the forget pictures plus a
//! retain term on pictures to keep:
//!
//! ```text
//! L = − mean_forget log p(rᵢ | xᵢ) + λ · mean_retain KL(p_orig(·|x) ‖ p(·|x))
//! ```
//!
//! The retain pictures are the user's retain set, or synthetic pictures of the head's other
//! classes when none is given.

use super::baseline::{BaselineRun, Objective, RetainedOptions, baseline_preset, retained_help};
use super::{MethodError, Preset, UnlearningMethod, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::data::shapes::Rng;
use crate::unlearn::job::Method;

/// The AmnsRetain baseline.
pub struct AmnsRetain;

impl UnlearningMethod for AmnsRetain {
    fn name(&self) -> &'static str {
        "amns-retain"
    }

    fn title(&self) -> &'static str {
        "AmnsRetain (random relabelling with retain pictures)"
    }

    fn summary(&self) -> &'static str {
        "Teaches a random wrong class for pictures of the class while holding the answers on \
         pictures of everything else."
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
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options: RetainedOptions = parse_options(self.name(), settings)?;
        Ok(Box::new(BaselineRun::new(
            "amns-retain",
            Objective::RandomLabels(Rng::new(seed)),
            options.base,
            Some((options.retain_weight, options.retain_batch)),
            scenario,
        )))
    }
}
