//! **ULip**: the vision-only baseline of the Lip paper (after Foster et al.).
//!
//! Everything as in [`super::lip`], with the image term of the ratio only and only vision
//! layers updated; the text tower is left as it is:
//!
//! ```text
//! L_ULip = mean_ε ‖f(x) − f(x+ε)‖₂ / ‖ε‖₂
//! ```

use burn::tensor::Tensor;

use super::lip::{
    LipFamily, LipOptions, PerturbationLoss, PerturbationTerms, family_help, family_preset,
    lipschitz_retain_warning,
};
use super::{MethodError, Preset, UnlearningMethod, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::unlearn::job::Method;

/// The ULip baseline.
pub struct ULip;

/// ULip's loss.
pub struct ULipLoss;

impl PerturbationLoss for ULipLoss {
    fn name(&self) -> &'static str {
        "ulip"
    }

    fn updates_text(&self) -> bool {
        false
    }

    fn loss(&self, terms: PerturbationTerms) -> Tensor<1> {
        (terms.image / terms.noise).mean()
    }
}

impl UnlearningMethod for ULip {
    fn name(&self) -> &'static str {
        "ulip"
    }

    fn title(&self) -> &'static str {
        "ULip (vision-only Lipschitz baseline)"
    }

    fn summary(&self) -> &'static str {
        "Lip's noise-insensitivity on the image tower alone; the text tower is left as it is."
    }

    fn needs(&self) -> &'static str {
        "Pictures of the class: real ones if given, otherwise synthetic."
    }

    fn defaults(&self) -> toml::Table {
        toml::Table::try_from(LipOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        family_help(key)
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        family_preset(preset)
    }

    fn warning(&self, settings: &toml::Table) -> Option<&'static str> {
        lipschitz_retain_warning(settings)
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        Ok(parse_options::<LipOptions>(self.name(), settings)?.data_needs())
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options = parse_options(self.name(), settings)?;
        Ok(Box::new(LipFamily::new(
            Box::new(ULipLoss),
            options,
            scenario,
            seed,
        )))
    }
}
