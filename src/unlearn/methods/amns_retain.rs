//! **AmnsRetain**: [`super::amnesiac`]'s random relabelling of the forget pictures plus a
//! retain term on pictures to keep:
//!
//! ```text
//! L = − mean_forget log p(rᵢ | xᵢ) + λ · mean_retain KL(p_orig(·|x) ‖ p(·|x))
//! ```
//!
//! The retain pictures are the user's retain set, or synthetic pictures of the head's other
//! classes when none is given.

use super::baseline::{ClassificationBaseline, ObjectiveKind};

/// The AmnsRetain baseline.
pub const AMNS_RETAIN: ClassificationBaseline = ClassificationBaseline {
    name: "amns-retain",
    title: "AmnsRetain (random relabelling with retain pictures)",
    summary: "Teaches a random wrong class for pictures of the class while holding the answers on \
              pictures of everything else.",
    needs: "Pictures of the class (real or synthetic) and pictures to keep (the retain set, or \
            synthetic pictures of the other classes).",
    objective: ObjectiveKind::RandomLabels,
    retained: true,
};
