//! Pictures that show what an edit changed: where the image tower looks (saliency from its
//! attention), drawn over the picture with a colour map, and where the embeddings lie (a
//! t-SNE map) before and after.

pub mod compare;
pub mod map;
pub mod overlay;
pub mod saliency;
