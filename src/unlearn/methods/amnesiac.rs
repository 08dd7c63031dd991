//! **Amnesiac** unlearning (Graves et al., AAAI 2021), in its relabelling form: fine-tune on
//! the forget pictures with a random wrong class for each, drawn afresh every step:
//!
//! ```text
//! L_Amnesiac = − mean_forget log p(rᵢ | xᵢ),   rᵢ uniform over the head's classes ≠ yᵢ
//! ```
//!
//! Every layer of both towers changes; nothing holds the other classes, so like gradient
//! ascent it over-forgets. [`super::amns_retain`] adds real retain pictures.

use super::baseline::{BaselineOptions, BaselineRun, Objective, baseline_help, baseline_preset};
use super::{MethodError, Preset, UnlearningMethod, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::data::shapes::Rng;
use crate::unlearn::job::Method;

/// The Amnesiac baseline.
pub struct Amnesiac;

impl UnlearningMethod for Amnesiac {
    fn name(&self) -> &'static str {
        "amnesiac"
    }

    fn title(&self) -> &'static str {
        "Amnesiac (random relabelling baseline)"
    }

    fn summary(&self) -> &'static str {
        "Teaches the model a random wrong class for each picture of the class to forget."
    }

    fn needs(&self) -> &'static str {
        "Pictures of the class: real ones if given, otherwise synthetic."
    }

    fn defaults(&self) -> toml::Table {
        toml::Table::try_from(BaselineOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        baseline_help(key)
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        baseline_preset(preset)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        Ok(parse_options::<BaselineOptions>(self.name(), settings)?.data_needs(false))
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = parse_options(self.name(), settings)?;
        Ok(Box::new(BaselineRun::new(
            "amnesiac",
            Objective::RandomLabels(Rng::new(seed)),
            options,
            None,
            scenario,
        )))
    }
}
