//! **Emb**: the embedding-distance baseline of the Lip paper (Kravets & Namboodiri).
//!
//! Everything as in [`super::lip`] (perturbations, layer ranking, escalation, stop), but the
//! loss uses plain distances instead of the noise-relative ratio and pushes picture and class
//! name apart:
//!
//! ```text
//! L_Emb = mean_ε ( ‖f(x) − f(x+ε)‖₂ + ‖g(t) − f(x+ε)‖₂ ) + α · mean_x ‖f(x) + g(t)‖₂
//! ```
//!
//! Minimising `‖f(x) + g(t)‖` drives the normalised image embedding towards the opposite of
//! its class text, which is what forgets; α (1 in the paper) weighs it.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::lip::{
    LipFamily, LipOptions, PerturbationLoss, PerturbationTerms, family_help, family_preset,
};
use super::{MethodError, Preset, UnlearningMethod, defaults_of, parse_options};
use crate::curation::{DataNeeds, Scenario};
use crate::unlearn::job::Method;

/// The Emb baseline.
pub struct Emb;

/// Emb's knobs: the Lip family's and `alpha`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct EmbOptions {
    /// Weight of `‖f(x) + g(t)‖`, the push between picture and class name.
    pub alpha: f32,
    /// Everything Emb shares with Lip.
    #[serde(flatten)]
    pub family: LipOptions,
}

impl Default for EmbOptions {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            family: LipOptions::default(),
        }
    }
}

/// Emb's loss.
pub struct EmbLoss {
    /// Weight of the push between picture and class name.
    pub alpha: f32,
}

impl PerturbationLoss for EmbLoss {
    fn name(&self) -> &'static str {
        "emb"
    }

    fn loss(&self, terms: PerturbationTerms) -> Tensor<1> {
        let pull_apart = (terms.clean + terms.class_text)
            .square()
            .sum_dim(1)
            .sqrt()
            .mean();
        (terms.image + terms.text).mean() + pull_apart * self.alpha
    }
}

impl UnlearningMethod for Emb {
    fn name(&self) -> &'static str {
        "emb"
    }

    fn title(&self) -> &'static str {
        "Emb (embedding distance baseline)"
    }

    fn summary(&self) -> &'static str {
        "Like Lip, but pulls embeddings of noisy pictures together and pushes picture and \
         class name apart by plain distances instead of a noise-relative ratio."
    }

    fn needs(&self) -> &'static str {
        "Only the class name (synthetic pictures), or real ones."
    }

    fn defaults(&self) -> toml::Table {
        defaults_of::<EmbOptions>()
    }

    fn help(&self, key: &str) -> &'static str {
        match key {
            "alpha" => "Weight of the term pushing image and class-name embeddings apart.",
            other => family_help(other),
        }
    }

    /// The family's presets; the careful one also pushes picture and class name apart twice
    /// as hard, which with the retain term forgets while keeping the rest.
    fn preset(&self, preset: Preset) -> toml::Table {
        let mut settings = family_preset(preset);
        if preset == Preset::Careful {
            settings.insert("alpha".into(), toml::Value::Float(2.0));
        }
        settings
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        Ok(parse_options::<EmbOptions>(self.name(), settings)?
            .family
            .data_needs())
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options: EmbOptions = parse_options(self.name(), settings)?;
        Ok(Box::new(LipFamily::new(
            Box::new(EmbLoss {
                alpha: options.alpha,
            }),
            options.family,
            scenario,
            seed,
        )))
    }
}
