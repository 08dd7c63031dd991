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

use super::baseline::{BaselineOptions, BaselineRun, Objective, baseline_help, baseline_preset};
use super::{MethodError, Preset, UnlearningMethod, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::unlearn::job::Method;

/// The gradient-ascent baseline.
pub struct GradientAscent;

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
        _seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = parse_options(self.name(), settings)?;
        Ok(Box::new(BaselineRun::new(
            "ga",
            Objective::Ascent,
            options,
            None,
            scenario,
        )))
    }
}
