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

use super::baseline::{ClassificationBaseline, ObjectiveKind};

/// The GradDiff baseline.
pub const GRAD_DIFF: ClassificationBaseline = ClassificationBaseline {
    name: "graddiff",
    title: "GradDiff (ascent on forget, descent on retain)",
    summary: "Gradient ascent on pictures of the class while holding the answers on pictures of \
              everything else: forgets less bluntly than GA.",
    needs: "Pictures of the class (real or synthetic) and pictures to keep (the retain set, or \
            synthetic pictures of the other classes).",
    objective: ObjectiveKind::Ascent,
    retained: true,
};
