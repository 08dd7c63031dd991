//! Pictures that show what an edit changed: where the image tower looks (saliency from its
//! attention), drawn over the picture with a colour map.

pub mod compare;
pub mod overlay;
pub mod saliency;
