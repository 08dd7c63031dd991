//! The Data panel: open a dataset (a spec, a folder, a manifest, or a file dropped on the
//! window), filter it, rank it by what the model sees (similarity to a text or to chosen
//! images), select images in the grid, and inspect one image with the model's zero-shot guesses.
//! Everything slow — opening, decoding, embedding — runs in the background.
//!
//! This module holds the browser's state and its public face; opening and filtering live in
//! `loading`, similarity ranking in `ranking`, the details view in `details` and the panel's
//! widgets in `panel`.

mod details;
mod loading;
mod map;
mod panel;
mod ranking;

use std::sync::Arc;

use eframe::egui::Context;

use super::grid::Selection;
use super::task::{Task, take_finished};
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use details::Inspector;
use loading::{Loaded, filter_items, load, spec_for_path};
use map::Mapper;
pub use map::{BrowseMap, BrowsePoint};
use ranking::{NO_MODEL, Query, Ranker, sort_by_score};

/// How the browsed images are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Thumbnails in dataset (or ranking) order.
    Grid,
    /// A t-SNE map of their embeddings, with lasso and rectangle selection.
    Map,
}

/// State of the Data panel: the open dataset, how it is filtered and ranked, what is selected
/// and which image is inspected.
pub struct Browser {
    /// The dataset spec in the text field (`shapes:<subset>?seed=N&n=M`, `folder:PATH` or
    /// `manifest:FILE`).
    pub spec: String,
    /// The dataset being browsed, once opened.
    pub dataset: Option<Arc<Dataset>>,
    /// The selected images (dataset item indices).
    pub selection: Selection,
    /// The image shown in the details view.
    pub details: Option<usize>,
    /// An image whose heatmaps the user asked for; the app opens the heatmap window.
    pub heatmap_request: Option<usize>,
    /// Whether the images are shown as a grid or as a map.
    pub view: View,
    loading: Option<Task<Result<Loaded, String>>>,
    load_error: Option<String>,
    /// Lower-cased class name and caption of every item, for the text filter.
    haystacks: Vec<String>,
    /// Items of each class, for the class filter.
    class_counts: Vec<usize>,
    label_filter: Option<usize>,
    text_filter: String,
    /// The items shown, in order; recomputed only when `stale`.
    visible: Vec<usize>,
    stale: bool,
    ranker: Ranker,
    inspector: Inspector,
    mapper: Mapper,
    /// The item under the pointer last frame.
    hovered: Option<usize>,
    tile: f32,
}

impl Default for Browser {
    /// A browser with no dataset and an empty spec.
    fn default() -> Self {
        Self::new(String::new())
    }
}

impl Browser {
    /// A browser with `spec` in its field, not opened yet (call [`Self::open`]).
    pub fn new(spec: impl Into<String>) -> Self {
        Self {
            spec: spec.into(),
            dataset: None,
            selection: Selection::default(),
            details: None,
            heatmap_request: None,
            view: View::Grid,
            loading: None,
            load_error: None,
            haystacks: Vec::new(),
            class_counts: Vec::new(),
            label_filter: None,
            text_filter: String::new(),
            visible: Vec::new(),
            stale: false,
            ranker: Ranker::default(),
            inspector: Inspector::default(),
            mapper: Mapper::default(),
            hovered: None,
            tile: 72.0,
        }
    }

    /// Starts opening `spec` in the background (the field shows it, the panel a spinner);
    /// [`Self::poll`] reports when it is done.
    pub fn open(&mut self, spec: String, ctx: &Context) {
        let spec = spec.trim().to_string();
        self.spec.clone_from(&spec);
        self.load_error = None;
        let label = format!("Opening {spec}");
        self.loading = Some(Task::spawn(label, ctx, move || load(&spec)));
    }

    /// Opens a folder or manifest dropped on the window this frame. Call it every frame from
    /// any page, so that a drop works wherever the user is; a path that is neither is refused
    /// with the error returned (and shown in the panel), since other pages do not show it.
    pub fn accept_dropped_files(&mut self, ctx: &Context) -> Result<(), String> {
        let dropped = ctx.input(|i| {
            i.raw
                .dropped_files
                .first()
                .map(|file| file.path().to_path_buf())
        });
        let Some(path) = dropped else {
            return Ok(());
        };
        match spec_for_path(&path) {
            Ok(spec) => {
                self.open(spec, ctx);
                Ok(())
            }
            Err(error) => {
                self.load_error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Collects finished background work; call it every frame. Returns `Some` when a dataset
    /// finished opening: `Ok` once it is shown, or the error (also shown in the panel).
    pub fn poll(&mut self) -> Option<Result<(), String>> {
        self.stale |= self.ranker.poll();
        self.inspector.poll();
        self.poll_map();
        let finished = take_finished(&mut self.loading).map(|result| match result {
            Ok(Ok(loaded)) => {
                self.install(loaded);
                Ok(())
            }
            Ok(Err(error)) | Err(error) => {
                self.load_error = Some(error.clone());
                Err(error)
            }
        });
        self.refresh_visible();
        finished
    }

    /// The items shown, filtered and ranked, in display order.
    pub fn visible(&self) -> &[usize] {
        &self.visible
    }

    /// Cosine similarity of every item to the current ranking query (`None` for unreadable
    /// images), for rules such as "every image similar to this text".
    pub fn scores(&self) -> Option<&[Option<f32>]> {
        self.ranker.ranking.as_ref().map(|r| r.scores.as_slice())
    }

    /// Cosine similarity of every item to `text`, if the current ranking is by that text;
    /// otherwise start one with [`Self::rank_by_text`] and ask again when it is done.
    pub fn text_scores(&self, text: &str) -> Option<Vec<Option<f32>>> {
        let ranking = self.ranker.ranking.as_ref()?;
        matches!(&ranking.query, Query::Text(t) if t == text.trim()).then(|| ranking.scores.clone())
    }

    /// Ranks the browsed images by similarity to `text` in the background, embedding the
    /// dataset first if this model has not yet (the panel shows progress); without a model or a
    /// dataset it only explains why not.
    pub fn rank_by_text(&mut self, text: String, model: Option<&Arc<LoadedModel>>, ctx: &Context) {
        let text = text.trim().to_string();
        self.ranker.text.clone_from(&text);
        match (model, &self.dataset) {
            (None, _) => self.ranker.error = Some(NO_MODEL.into()),
            (_, None) => self.ranker.error = Some("Open a dataset first".into()),
            (Some(_), Some(_)) if text.is_empty() => {
                self.ranker.error = Some("Type a text to rank by".into());
            }
            (Some(model), Some(dataset)) => {
                let dataset = Arc::clone(dataset);
                self.ranker.start(Query::Text(text), model, &dataset, ctx);
            }
        }
    }

    /// What is running in the background, for the status bar.
    pub fn activity(&self) -> Option<String> {
        if let Some(task) = &self.loading {
            return Some(format!("{}…", task.label));
        }
        self.ranker.activity().or_else(|| self.map_activity())
    }

    /// Replaces the browsed dataset with a freshly opened one. Another dataset's selection and
    /// details are dropped; reopening the same spec (or restoring one at start-up) keeps them.
    fn install(&mut self, loaded: Loaded) {
        let len = loaded.dataset.items.len();
        let other = self
            .dataset
            .as_ref()
            .is_some_and(|d| d.name != loaded.dataset.name);
        if other {
            self.selection.clear();
            self.details = None;
            self.label_filter = None;
        }
        self.selection.clamp(len);
        self.details = self.details.filter(|&d| d < len);
        self.label_filter = self.label_filter.filter(|&l| l < loaded.class_counts.len());
        self.haystacks = loaded.haystacks;
        self.class_counts = loaded.class_counts;
        self.dataset = Some(Arc::new(loaded.dataset));
        self.ranker = Ranker::default();
        self.inspector = Inspector::default();
        self.mapper = Mapper::default();
        self.hovered = None;
        self.stale = true;
    }

    /// Recomputes the shown items after the dataset, the filters or the ranking changed.
    fn refresh_visible(&mut self) {
        let Some(dataset) = self.dataset.as_deref().filter(|_| self.stale) else {
            return;
        };
        self.stale = false;
        self.visible = filter_items(
            dataset,
            &self.haystacks,
            self.label_filter,
            &self.text_filter,
        );
        if let Some(ranking) = &self.ranker.ranking {
            sort_by_score(&mut self.visible, &ranking.scores);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use eframe::egui::{DroppedFile, RawInput};

    use super::*;

    /// Polls until `done` holds (failing after two minutes).
    pub(super) fn settle(browser: &mut Browser, what: &str, done: impl Fn(&Browser) -> bool) {
        let start = std::time::Instant::now();
        while !done(browser) {
            assert!(
                start.elapsed().as_secs() < 120,
                "timed out waiting for {what}"
            );
            browser.poll();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The demo ViT and a browser showing 40 colour images, loaded; with the label of "red".
    pub(super) fn browsing_colours(
        ctx: &Context,
    ) -> (Arc<LoadedModel>, Browser, Arc<Dataset>, usize) {
        let model = Arc::new(
            LoadedModel::open_spec("demo:vit", crate::backend::DeviceChoice::Cpu).unwrap(),
        );
        let mut browser = Browser::default();
        browser.open("shapes:colors?seed=5&n=40".into(), ctx);
        settle(&mut browser, "the dataset", |b| b.dataset.is_some());
        let data = browser.dataset.clone().unwrap();
        let red = data.classes.iter().position(|c| c == "red").unwrap();
        (model, browser, data, red)
    }

    /// A file dropped on the window, as the windowing integration hands it over.
    #[derive(Debug)]
    struct Dropped(PathBuf);

    impl DroppedFile for Dropped {
        fn path(&self) -> &Path {
            &self.0
        }

        fn bytes(&self) -> Result<Vec<u8>, String> {
            std::fs::read(&self.0).map_err(|e| e.to_string())
        }
    }

    /// Runs one frame in which `path` is dropped, returning what the browser made of it.
    fn drop_on(browser: &mut Browser, ctx: &Context, path: PathBuf) -> Result<(), String> {
        let input = RawInput {
            dropped_files: vec![Arc::new(Dropped(path))],
            ..RawInput::default()
        };
        let mut accepted = Ok(());
        let mut output = ctx.run_ui(input, |ui| {
            accepted = browser.accept_dropped_files(ui.ctx())
        });
        // Nothing paints the frame: discard the font atlas upload it asks for.
        output.textures_delta.clear();
        accepted
    }

    #[test]
    fn dropped_folders_open_and_other_files_are_refused() {
        let ctx = Context::default();
        let mut browser = Browser::default();
        assert_eq!(browser.accept_dropped_files(&ctx), Ok(()));
        assert!(browser.loading.is_none(), "nothing was dropped");

        let dir = tempfile::tempdir().unwrap();
        let error = drop_on(&mut browser, &ctx, dir.path().join("cat.png")).unwrap_err();
        assert!(error.contains("cat.png"), "{error}");
        assert_eq!(browser.load_error.as_ref(), Some(&error));
        assert!(browser.loading.is_none());

        assert_eq!(
            drop_on(&mut browser, &ctx, dir.path().to_path_buf()),
            Ok(())
        );
        assert_eq!(browser.spec, format!("folder:{}", dir.path().display()));
        assert!(browser.loading.is_some() && browser.load_error.is_none());
    }
}
