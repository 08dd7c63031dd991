//! **ULip**: the vision-only baseline of the Lip paper (after Foster et al.).
//!
//! Everything as in [`super::lip`], with the image term of the ratio only and only vision
//! layers updated; the text tower is left as it is:
//!
//! ```text
//! L_ULip = mean_ε ‖f(x) − f(x+ε)‖₂ / ‖ε‖₂
//! ```

use burn::tensor::Tensor;

use super::lip::{LipschitzMethod, PerturbationLoss, PerturbationTerms};

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

/// The ULip baseline.
pub const ULIP: LipschitzMethod = LipschitzMethod {
    name: "ulip",
    title: "ULip (vision-only Lipschitz baseline)",
    summary: "Lip's noise-insensitivity on the image tower alone; the text tower is left as it is.",
    needs: "Pictures of the class: real ones if given, otherwise synthetic.",
    loss: || Box::new(ULipLoss),
};
