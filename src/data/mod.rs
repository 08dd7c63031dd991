//! Image sources for building forget/retain datasets: procedural worlds whose concepts are known
//! exactly, so unlearning can be measured without downloading or labelling photographs.

pub mod contact_sheet;
pub mod dataset;
pub mod shapes;
pub mod subset;
