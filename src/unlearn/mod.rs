//! Unlearning: the parts every method shares.

pub mod job;
pub mod lip;
pub mod methods;
pub mod params;
pub mod synthetic;
