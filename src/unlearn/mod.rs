//! Unlearning: the job runner, the registered methods (one file each under `methods/`), and
//! what they share (parameter selection, synthetic pictures, the toolkit).

pub mod job;
pub mod methods;
pub mod params;
pub mod synthetic;
pub mod toolkit;
