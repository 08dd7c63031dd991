//! A dataset's image embeddings under one model, computed in pieces that report progress and
//! can be cancelled, and what they answer: each picture's embedding, the similarity of every
//! picture to a query, the centre of a selection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::clip::host_values;
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use crate::eval::embed_items;

/// Images embedded between two progress reports (and cancellation checks).
const EMBED_CHUNK: usize = 256;
/// Images per forward pass when embedding.
const EMBED_BATCH: usize = 64;

/// Normalised image embeddings of a whole dataset, on the host: computed once per model, they
/// serve ranking by similarity and the embedding map.
pub struct DatasetEmbeddings {
    width: usize,
    values: Vec<f32>,
    /// Row of each dataset item in `values`; `None` for unreadable images.
    rows: Vec<Option<usize>>,
}

impl DatasetEmbeddings {
    /// Embeds every image of `dataset`, piece by piece, counting finished images in `progress`
    /// and giving up when `cancel` is set.
    pub fn compute(
        model: &LoadedModel,
        dataset: &Dataset,
        progress: &AtomicUsize,
        cancel: &AtomicBool,
    ) -> Result<Self, String> {
        let all: Vec<usize> = (0..dataset.items.len()).collect();
        let mut embeddings = Self {
            width: model.model.embed_dim(),
            values: Vec::new(),
            rows: vec![None; all.len()],
        };
        for chunk in all.chunks(EMBED_CHUNK) {
            if cancel.load(Ordering::Relaxed) {
                return Err("cancelled".into());
            }
            let part = embed_items(model, dataset, chunk, EMBED_BATCH);
            embeddings.append(&part.items, &host_values(part.embeds));
            progress.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        Ok(embeddings)
    }

    /// `cached`, the embeddings computed before under the same model, or else [`Self::compute`].
    pub fn cached_or_compute(
        cached: Option<Arc<Self>>,
        model: &LoadedModel,
        dataset: &Dataset,
        progress: &AtomicUsize,
        cancel: &AtomicBool,
    ) -> Result<Arc<Self>, String> {
        match cached {
            Some(embeddings) => Ok(embeddings),
            None => Self::compute(model, dataset, progress, cancel).map(Arc::new),
        }
    }

    /// Adds the rows `values` (row-major) of the dataset items `items`.
    fn append(&mut self, items: &[usize], values: &[f32]) {
        for (&item, row) in items.iter().zip(values.chunks(self.width.max(1))) {
            if let Some(slot) = self.rows.get_mut(item) {
                *slot = Some(self.values.len() / self.width.max(1));
                self.values.extend_from_slice(row);
            }
        }
    }

    /// The embedding of `item`, if it was readable.
    pub fn row(&self, item: usize) -> Option<&[f32]> {
        let row = (*self.rows.get(item)?)?;
        self.values.get(row * self.width..(row + 1) * self.width)
    }

    /// Cosine similarity of every item to the unit vector `query`.
    pub fn similarities(&self, query: &[f32]) -> Vec<Option<f32>> {
        (0..self.rows.len())
            .map(|item| self.row(item).map(|row| dot(row, query)))
            .collect()
    }

    /// The normalised mean embedding of `items`; `None` if none of them was readable.
    pub fn centroid(&self, items: &[usize]) -> Option<Vec<f32>> {
        let mut sum = vec![0.0; self.width];
        let mut found = false;
        for row in items.iter().filter_map(|&item| self.row(item)) {
            sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            found = true;
        }
        let norm = dot(&sum, &sum).sqrt();
        (found && norm > 0.0).then(|| sum.iter().map(|v| v / norm).collect())
    }
}

/// The dot product of two vectors.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_map_rows_back_to_items() {
        // Item 1 was unreadable: rows are items 0 and 2.
        let mut embeddings = DatasetEmbeddings {
            width: 2,
            values: Vec::new(),
            rows: vec![None; 3],
        };
        embeddings.append(&[0, 2], &[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(embeddings.row(2), Some([0.0, 1.0].as_slice()));
        assert_eq!(embeddings.row(1), None);
        assert_eq!(
            embeddings.similarities(&[1.0, 0.0]),
            vec![Some(1.0), None, Some(0.0)]
        );
        let centre = embeddings.centroid(&[0, 1, 2]).unwrap();
        let half = std::f32::consts::FRAC_1_SQRT_2;
        assert!((centre[0] - half).abs() < 1e-6 && (centre[1] - half).abs() < 1e-6);
        assert!(embeddings.centroid(&[1]).is_none());
    }
}
