//! Lethe: machine unlearning for CLIP models.
//!
//! The library holds the engine (model, tokenizer, preprocessing, checkpoints, device choice);
//! the `lethe` binary wraps it in a command line.

pub mod app;
pub mod atomic;
pub mod backend;
pub mod batch;
pub mod cli;
pub mod clip;
pub mod curation;
pub mod data;
pub mod demo;
pub mod engine;
pub mod eval;
pub mod fused;
pub mod limits;
pub mod recipe;
pub mod train;
pub mod unlearn;
pub mod viz;
pub mod workflow;
