//! **Amnesiac** unlearning (Graves et al., AAAI 2021), in its relabelling form: fine-tune on
//! the forget pictures with a random wrong class for each, drawn afresh every step:
//!
//! ```text
//! L_Amnesiac = − mean_forget log p(rᵢ | xᵢ),   rᵢ uniform over the head's classes ≠ yᵢ
//! ```
//!
//! Every layer of both towers changes; nothing holds the other classes, so like gradient
//! ascent it over-forgets. [`super::amns_retain`] adds real retain pictures.

use super::baseline::{ClassificationBaseline, ObjectiveKind};

/// The Amnesiac baseline.
pub const AMNESIAC: ClassificationBaseline = ClassificationBaseline {
    name: "amnesiac",
    title: "Amnesiac (random relabelling baseline)",
    summary: "Teaches the model a random wrong class for each picture of the class to forget.",
    needs: "Pictures of the class: real ones if given, otherwise synthetic.",
    objective: ObjectiveKind::RandomLabels,
    retained: false,
};
