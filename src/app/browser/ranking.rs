//! Similarity ranking: the dataset's image embeddings, computed once per model in the
//! background, and the cosine similarity of every image to a text or to chosen images.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use eframe::egui::Context;

use crate::app::task::{CancelOnDrop, Task};
use crate::clip::{host_values, normalize};
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use crate::engine::embeddings::DatasetEmbeddings;

/// Why ranking is unavailable without a model; said by the ranking call and the panel's buttons.
pub(super) const NO_MODEL: &str = "Open a model first: ranking uses its image and text embeddings";

/// What "similarity" means, for the tooltips of the ranking bar and the details view.
pub(super) const SIMILARITY_HELP: &str = "Similarity is the cosine between the model's \
    embeddings of two things (from -1 to 1): the higher, the more alike the model finds them. \
    Ranking orders the images from most to least similar.";

/// A value computed with one model, so that it is recomputed when the model changes (the
/// dataset's embeddings here, the class embeddings and guesses of the details view). The weak
/// reference keeps the model's allocation from being reused, so the identity check is exact.
pub(super) struct ForModel<T> {
    model: Weak<LoadedModel>,
    value: T,
}

impl<T> ForModel<T> {
    /// `value`, remembered as computed with `model`.
    pub(super) fn new(model: &Arc<LoadedModel>, value: T) -> Self {
        Self {
            model: Arc::downgrade(model),
            value,
        }
    }

    /// The value, if it was computed with `model`.
    pub(super) fn get(&self, model: &Arc<LoadedModel>) -> Option<&T> {
        std::ptr::eq(self.model.as_ptr(), Arc::as_ptr(model)).then_some(&self.value)
    }
}

/// What to rank by; the panel builds it from the user's text or selection.
pub(super) enum Query {
    /// Similarity to a text.
    Text(String),
    /// Similarity to the average of these images.
    Images(Vec<usize>),
}

impl Query {
    /// How the ranking is described ("“a red star”", "image 12", "3 selected images"), in the
    /// ranking bar and next to an image's similarity.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Text(text) => format!("“{text}”"),
            Self::Images(items) if items.len() == 1 => format!("image {}", items[0]),
            Self::Images(items) => format!("{} selected images", items.len()),
        }
    }
}

/// The similarity of every item to a query, which orders the grid and is shown per image.
pub(super) struct Ranking {
    /// What was ranked by.
    pub(super) query: Query,
    /// Cosine similarity per dataset item; `None` for unreadable images.
    pub(super) scores: Vec<Option<f32>>,
}

/// The result of a ranking run: the dataset's embeddings (kept for the next query) and the
/// ranking.
struct Ranked {
    embeddings: Arc<DatasetEmbeddings>,
    ranking: Ranking,
}

/// A ranking run in the background, with the progress of its embedding step. Dropping it
/// stops the embedding at the next chunk.
struct Running {
    task: Task<Result<Ranked, String>>,
    model: Weak<LoadedModel>,
    progress: Arc<AtomicUsize>,
    total: usize,
    _cancel: CancelOnDrop,
}

/// Ranking state: the query text, the run in progress, the last result and error, and the
/// dataset's embeddings once computed (per model). The browser owns one per dataset; the panel
/// edits the text and shows the rest.
#[derive(Default)]
pub(super) struct Ranker {
    /// The text in the ranking field.
    pub(super) text: String,
    running: Option<Running>,
    /// The last finished ranking, which orders the grid; `None` for dataset order.
    pub(super) ranking: Option<Ranking>,
    /// Why the last ranking failed or could not start.
    pub(super) error: Option<String>,
    embeddings: Option<ForModel<Arc<DatasetEmbeddings>>>,
}

impl Ranker {
    /// Starts ranking `dataset` by `query` with `model`, embedding the dataset first unless that
    /// was done already with this model.
    pub(super) fn start(
        &mut self,
        query: Query,
        model: &Arc<LoadedModel>,
        dataset: &Arc<Dataset>,
        ctx: &Context,
    ) {
        let cached = self
            .embeddings
            .as_ref()
            .and_then(|e| e.get(model))
            .map(Arc::clone);
        let total = if cached.is_some() {
            0
        } else {
            dataset.items.len()
        };
        let progress = Arc::new(AtomicUsize::new(0));
        let (guard, cancel) = CancelOnDrop::new();
        let work = {
            let (model, dataset) = (Arc::clone(model), Arc::clone(dataset));
            let progress = Arc::clone(&progress);
            move || rank(&model, &dataset, cached, query, &progress, &cancel)
        };
        self.error = None;
        self.running = Some(Running {
            task: Task::spawn("Ranking", ctx, work),
            model: Arc::downgrade(model),
            progress,
            total,
            _cancel: guard,
        });
    }

    /// The dataset's embeddings under `model`, if computed (by a ranking or the map).
    pub(super) fn embeddings_for(
        &self,
        model: &Arc<LoadedModel>,
    ) -> Option<Arc<DatasetEmbeddings>> {
        self.embeddings.as_ref()?.get(model).map(Arc::clone)
    }

    /// Keeps the dataset's embeddings under `model` for the next ranking.
    pub(super) fn remember(
        &mut self,
        model: &Arc<LoadedModel>,
        embeddings: Arc<DatasetEmbeddings>,
    ) {
        self.embeddings = Some(ForModel::new(model, embeddings));
    }

    /// Whether a run is in progress, so that the panel offers no second one meanwhile.
    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Takes a finished run's result; true when a new ranking arrived (the shown order must
    /// follow).
    pub(super) fn poll(&mut self) -> bool {
        let Some(result) = self.running.as_ref().and_then(|r| r.task.poll()) else {
            return false;
        };
        let Some(running) = self.running.take() else {
            return false;
        };
        match result {
            Ok(Ok(ranked)) => {
                if let Some(model) = running.model.upgrade() {
                    self.remember(&model, ranked.embeddings);
                }
                self.ranking = Some(ranked.ranking);
                true
            }
            Ok(Err(error)) | Err(error) => {
                self.error = Some(error);
                false
            }
        }
    }

    /// "Embedding images 512/2000" or "Ranking", while a run is in progress, for the panel and
    /// the status bar.
    pub(super) fn activity(&self) -> Option<String> {
        let running = self.running.as_ref()?;
        let done = running.progress.load(Ordering::Relaxed);
        Some(if done < running.total {
            format!("Embedding images {done}/{} (once per model)", running.total)
        } else {
            "Ranking".to_string()
        })
    }
}

/// Ranks every item of `dataset` by similarity to `query` (background thread).
fn rank(
    model: &LoadedModel,
    dataset: &Dataset,
    cached: Option<Arc<DatasetEmbeddings>>,
    query: Query,
    progress: &AtomicUsize,
    cancel: &AtomicBool,
) -> Result<Ranked, String> {
    let embeddings =
        DatasetEmbeddings::cached_or_compute(cached, model, dataset, progress, cancel)?;
    let vector = match &query {
        Query::Text(text) => host_values(normalize(model.embed_texts(std::slice::from_ref(text)))),
        Query::Images(items) => embeddings
            .centroid(items)
            .ok_or("none of the selected images could be read")?,
    };
    let ranking = Ranking {
        query,
        scores: embeddings.similarities(&vector),
    };
    Ok(Ranked {
        embeddings,
        ranking,
    })
}

/// Orders items by descending score, unscored (unreadable) ones last; ties keep their order.
/// The browser applies it to the filtered items whenever a ranking is in force.
pub(super) fn sort_by_score(items: &mut [usize], scores: &[Option<f32>]) {
    let score = |item: usize| {
        scores
            .get(item)
            .copied()
            .flatten()
            .unwrap_or(f32::NEG_INFINITY)
    };
    items.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::browser::tests::{browsing_colours, settle};

    #[test]
    fn ranking_orders_by_score_with_unreadable_images_last() {
        let mut items = vec![0, 1, 2, 3, 4];
        let scores = [Some(0.1), None, Some(0.9), Some(0.1), Some(0.5)];
        sort_by_score(&mut items, &scores);
        assert_eq!(items, vec![2, 4, 0, 3, 1]);
    }

    #[test]
    fn queries_describe_themselves() {
        assert_eq!(Query::Text("a red star".into()).describe(), "“a red star”");
        assert_eq!(Query::Images(vec![12]).describe(), "image 12");
        assert_eq!(Query::Images(vec![1, 2, 3]).describe(), "3 selected images");
    }

    #[test]
    fn ranking_comes_from_the_model() {
        let ctx = Context::default();
        let (model, mut browser, data, red) = browsing_colours(&ctx);

        browser.rank_by_text("a red object".into(), Some(&model), &ctx);
        settle(&mut browser, "the text ranking", |b| !b.ranker.is_running());
        assert_eq!(browser.ranker.error, None);
        let top = browser.visible()[0];
        assert_eq!(data.items[top].label, red, "the most similar image is red");
        assert!(browser.text_scores("a red object").is_some());
        assert!(browser.text_scores("something else").is_none());

        // An image is most similar to itself; the embeddings are reused.
        browser.selection.select_all(&[top]);
        let query = Query::Images(vec![top]);
        browser.ranker.start(query, &model, &data, &ctx);
        assert_eq!(browser.ranker.running.as_ref().unwrap().total, 0);
        settle(&mut browser, "the image ranking", |b| {
            !b.ranker.is_running()
        });
        assert_eq!(browser.visible()[0], top);
        let own = browser.scores().unwrap()[top].unwrap();
        assert!((own - 1.0).abs() < 1e-4, "{own}");
    }
}
