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

use super::baseline::{ClassificationBaseline, ObjectiveKind};

/// The GA baseline.
pub const GRADIENT_ASCENT: ClassificationBaseline = ClassificationBaseline {
    name: "ga",
    title: "GA (gradient ascent baseline)",
    summary: "Makes the model as wrong as possible about pictures of the class, everywhere in the \
              model. Fast and blunt: other classes usually suffer.",
    needs: "Pictures of the class: real ones if given, otherwise synthetic.",
    objective: ObjectiveKind::Ascent,
    retained: false,
};
