//! Training the demo models from scratch on the Shapes world (`lethe train-demo`).

pub mod arch;
pub mod captions;
pub mod init;
pub mod loss;
pub mod trainer;

use burn::optim::{AdamWConfig, ModuleOptimizer};

/// AdamW with CLIP's settings (β₁ 0.9, β₂ 0.98, ε 1e-6), which the Lip paper also uses for
/// unlearning; only the weight decay differs between uses.
pub fn clip_adam(weight_decay: f32) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_2(0.98)
        .with_epsilon(1e-6)
        .with_weight_decay(weight_decay)
        .init()
}
