//! The details view of one image: a larger preview, its label, caption and similarity to the
//! ranking query, and the model's top zero-shot guesses, all computed in the background.

use std::sync::{Arc, Weak};

use burn::tensor::Tensor;
use eframe::egui::{self, Context, TextureHandle, TextureOptions, Ui};

use super::Browser;
use super::ranking::{ForModel, SIMILARITY_HELP};
use crate::app::task::{Task, take_finished};
use crate::app::thumbnails::decode_image;
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use crate::eval::{class_embeddings, class_probabilities, embed_items};

/// Zero-shot guesses shown for an image.
const TOP_GUESSES: usize = 5;
/// Longest side of the image in the details view, in pixels.
const PREVIEW_SIDE: u32 = 320;

/// The most probable classes of an image with their probabilities, or why there are none.
type Guesses = Result<Vec<(usize, f32)>, String>;

/// Zero-shot guesses for one image, with the class embeddings they were computed from (kept
/// for the next image).
struct Guessed {
    heads: Tensor<2>,
    top: Vec<(usize, f32)>,
}

/// Zero-shot guesses being computed with a model.
struct Guessing {
    model: Weak<LoadedModel>,
    task: Task<Result<Guessed, String>>,
}

/// The details view's background work: the larger image and the zero-shot guesses of the
/// inspected item, and the dataset's class embeddings once computed (per model). The browser
/// owns one per dataset and polls it every frame.
#[derive(Default)]
pub(super) struct Inspector {
    index: Option<usize>,
    preview: Option<Result<TextureHandle, String>>,
    previewing: Option<Task<Result<TextureHandle, String>>>,
    guesses: Option<ForModel<Guesses>>,
    guessing: Option<Guessing>,
    heads: Option<ForModel<Tensor<2>>>,
}

impl Inspector {
    /// Starts whatever the view of item `index` still needs: its image, and its guesses with
    /// `model` (again when the model changed).
    fn follow(
        &mut self,
        index: usize,
        dataset: &Arc<Dataset>,
        model: Option<&Arc<LoadedModel>>,
        ctx: &Context,
    ) {
        if self.index != Some(index) {
            *self = Self {
                index: Some(index),
                heads: self.heads.take(),
                ..Self::default()
            };
            self.previewing = Some(preview(dataset, index, ctx));
        }
        let Some(model) = model else {
            return;
        };
        let current = self
            .guesses
            .as_ref()
            .is_some_and(|g| g.get(model).is_some());
        let started = self
            .guessing
            .as_ref()
            .is_some_and(|g| std::ptr::eq(g.model.as_ptr(), Arc::as_ptr(model)));
        if !current && !started {
            let heads = self.heads.as_ref().and_then(|h| h.get(model)).cloned();
            let work = {
                let (model, dataset) = (Arc::clone(model), Arc::clone(dataset));
                move || guess(&model, &dataset, index, heads)
            };
            self.guessing = Some(Guessing {
                model: Arc::downgrade(model),
                task: Task::spawn("Zero-shot guesses", ctx, work),
            });
        }
    }

    /// Takes finished previews and guesses; the browser calls it every frame.
    pub(super) fn poll(&mut self) {
        if let Some(result) = take_finished(&mut self.previewing) {
            self.preview = Some(result.and_then(|preview| preview));
        }
        let Some(result) = self.guessing.as_ref().and_then(|g| g.task.poll()) else {
            return;
        };
        let Some(model) = self.guessing.take().and_then(|g| g.model.upgrade()) else {
            return;
        };
        let guesses = match result.and_then(|guessed| guessed) {
            Ok(guessed) => {
                self.heads = Some(ForModel::new(&model, guessed.heads));
                Ok(guessed.top)
            }
            Err(error) => Err(error),
        };
        self.guesses = Some(ForModel::new(&model, guesses));
    }

    /// The guesses made with `model`, once there.
    fn guesses_for(&self, model: &Arc<LoadedModel>) -> Option<&Guesses> {
        self.guesses.as_ref()?.get(model)
    }
}

impl Browser {
    /// The details view: the image, its label and caption, its similarity to the ranking query
    /// and the model's top zero-shot guesses. The panel shows it beside the grid while an image
    /// is inspected.
    pub(super) fn details_view(
        &mut self,
        ui: &mut Ui,
        dataset: &Arc<Dataset>,
        model: Option<&Arc<LoadedModel>>,
        index: usize,
    ) {
        let Some(item) = dataset.items.get(index) else {
            self.details = None;
            return;
        };
        self.inspector.follow(index, dataset, model, ui.ctx());
        ui.horizontal(|ui| {
            // Not "image N": that label names the tile, and must stay unique.
            ui.heading(format!("Image {index}"));
            if ui.button("Close").clicked() {
                self.details = None;
            }
            if ui
                .button("Heatmaps")
                .on_hover_text(
                    "Where the model (and the edited model of the latest run) looks in this \
                     image, toward the class you pick.",
                )
                .clicked()
            {
                self.heatmap_request = Some(index);
            }
        });
        match &self.inspector.preview {
            Some(Ok(texture)) => {
                let side = ui.available_width().min(PREVIEW_SIDE as f32);
                ui.add(egui::Image::new(texture).max_size(egui::Vec2::splat(side)));
            }
            Some(Err(error)) => {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            None => {
                ui.spinner();
            }
        }
        let class = dataset.classes.get(item.label).map_or("?", String::as_str);
        ui.label(format!("Label: {class}"));
        if let Some(caption) = &item.caption {
            ui.label(format!("Caption: {caption}"));
        }
        ui.weak(item.source.describe());
        if let Some(ranking) = &self.ranker.ranking
            && let Some(score) = ranking.scores.get(index).copied().flatten()
        {
            ui.label(format!(
                "Similarity to {}: {score:.3}",
                ranking.query.describe()
            ))
            .on_hover_text(SIMILARITY_HELP);
        }
        ui.separator();
        self.guesses_view(ui, dataset, model, item.label);
    }

    /// The top zero-shot guesses as bars, the true class marked.
    fn guesses_view(
        &self,
        ui: &mut Ui,
        dataset: &Dataset,
        model: Option<&Arc<LoadedModel>>,
        label: usize,
    ) {
        ui.strong("Zero-shot guesses").on_hover_text(
            "Zero-shot: the model was not trained on these classes. It compares the image with \
             a sentence naming each class (the dataset's prompt templates, such as \"a photo of \
             a {}.\") and turns the similarities into probabilities.",
        );
        let Some(model) = model else {
            ui.label("Open a model to see what it recognises in this image.");
            return;
        };
        match self.inspector.guesses_for(model) {
            None => {
                ui.spinner();
            }
            Some(Err(error)) => {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            Some(Ok(guesses)) => {
                for &(class, probability) in guesses {
                    let name = dataset.classes.get(class).map_or("?", String::as_str);
                    let mark = if class == label { " (its label)" } else { "" };
                    let text = format!("{name} {:.1}%{mark}", probability * 100.0);
                    ui.add(egui::ProgressBar::new(probability).text(text));
                }
            }
        }
    }
}

/// Decodes item `index` at preview size and uploads it (background thread).
fn preview(
    dataset: &Arc<Dataset>,
    index: usize,
    ctx: &Context,
) -> Task<Result<TextureHandle, String>> {
    let dataset = Arc::clone(dataset);
    let upload = ctx.clone();
    Task::spawn("Loading image", ctx, move || {
        let image = decode_image(&dataset, index, PREVIEW_SIDE)?;
        Ok(upload.load_texture(format!("preview {index}"), image, TextureOptions::LINEAR))
    })
}

/// The model's top zero-shot guesses for item `index` among the dataset's classes, using the
/// dataset's prompt templates; `heads` are the class embeddings when already computed.
fn guess(
    model: &LoadedModel,
    dataset: &Dataset,
    index: usize,
    heads: Option<Tensor<2>>,
) -> Result<Guessed, String> {
    let heads =
        heads.unwrap_or_else(|| class_embeddings(model, &dataset.classes, &dataset.templates));
    let image = embed_items(model, dataset, &[index], 1);
    if image.items.is_empty() {
        return Err(format!("image {index} could not be read"));
    }
    let probabilities = class_probabilities(model, image.embeds, heads.clone());
    let top = probabilities
        .first()
        .map(|row| top_classes(row, TOP_GUESSES))
        .unwrap_or_default();
    Ok(Guessed { heads, top })
}

/// The `k` most probable classes, most probable first.
fn top_classes(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::browser::tests::{browsing_colours, settle};

    #[test]
    fn top_classes_are_sorted_and_cut() {
        let top = top_classes(&[0.1, 0.6, 0.05, 0.25], 2);
        assert_eq!(top, vec![(1, 0.6), (3, 0.25)]);
        assert_eq!(top_classes(&[0.5], 5).len(), 1);
    }

    #[test]
    fn guesses_come_from_the_model() {
        let ctx = Context::default();
        let (model, mut browser, data, red) = browsing_colours(&ctx);
        // The image the model finds most like "a red object" is a clear case.
        browser.rank_by_text("a red object".into(), Some(&model), &ctx);
        settle(&mut browser, "the ranking", |b| b.scores().is_some());
        let top = browser.visible()[0];

        browser.inspector.follow(top, &data, Some(&model), &ctx);
        settle(&mut browser, "the guesses", |b| {
            b.inspector.guesses_for(&model).is_some() && b.inspector.preview.is_some()
        });
        let guesses = browser
            .inspector
            .guesses_for(&model)
            .unwrap()
            .as_ref()
            .unwrap();
        assert_eq!(guesses.len(), TOP_GUESSES);
        assert_eq!(guesses[0].0, red, "the model calls it red");
        assert!(browser.inspector.preview.as_ref().unwrap().is_ok());
    }
}
