//! Training the demo models from scratch on the Shapes world (`lethe train-demo`).

pub mod arch;
pub mod captions;
pub mod init;
pub mod loss;
pub mod trainer;
