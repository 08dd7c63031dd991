//! The same pictures under several models — the original and the edited one — as rows of
//! panels: the picture as the first model sees it, then each model's saliency over it. Used by
//! `lethe explain` and by the heatmaps of a result folder (there toward each picture's class,
//! so a forgotten class shows as evidence that fades).

use burn::tensor::Tensor;
use image::{DynamicImage, RgbImage, imageops};

use super::overlay::{comparison_sheet, overlay};
use super::saliency::{Saliency, method_name_toward, saliency, saliency_toward};
use crate::clip::preprocess::{Preprocessor, to_picture};
use crate::clip::{Clip, index_tensor};
use crate::engine::LoadedModel;
use crate::eval::class_embeddings;
use crate::eval::snapshot::EvalPlan;

/// How strongly a map covers its picture in the result folder's heatmaps.
pub const REPORT_OPACITY: f32 = 0.6;

/// One model's column of panels: the model, its preprocessing, and the text embeddings (of
/// this model) its maps are made toward — `[1, embed]` for every picture or one row per
/// picture — or `None` for attention alone.
pub type Column<'a> = (&'a Clip, &'a Preprocessor, Option<Tensor<2>>);

/// `picture` as `preprocessor`'s model sees it: cropped and scaled to its input size.
pub fn as_seen(preprocessor: &Preprocessor, picture: &DynamicImage) -> RgbImage {
    to_picture(
        &preprocessor.apply(picture),
        preprocessor.size,
        preprocessor.mean,
        preprocessor.std,
    )
}

/// One column's map of each picture: toward its text embeddings when it has them, attention
/// alone otherwise.
pub fn column_maps(column: &Column, pictures: &[DynamicImage]) -> Vec<Saliency> {
    let (model, preprocessor, toward) = column;
    let pixels: Vec<f32> = pictures
        .iter()
        .flat_map(|p| preprocessor.apply(p))
        .collect();
    let input = preprocessor.tensor(pixels, pictures.len(), &model.device());
    match toward {
        Some(text) => saliency_toward(model, input, text.clone()),
        None => saliency(model, input),
    }
}

/// One row per picture: the picture (`tile` pixels square, as the first model sees it) and
/// each model's map over it.
pub fn panel_rows(
    models: &[Column],
    pictures: &[DynamicImage],
    opacity: f32,
    tile: u32,
) -> Vec<Vec<RgbImage>> {
    let Some((_, preprocessor, _)) = models.first() else {
        return Vec::new();
    };
    let seen: Vec<RgbImage> = pictures.iter().map(|p| as_seen(preprocessor, p)).collect();
    let mut rows: Vec<Vec<RgbImage>> = seen
        .iter()
        .map(|picture| {
            vec![imageops::resize(
                picture,
                tile,
                tile,
                imageops::FilterType::Triangle,
            )]
        })
        .collect();
    for column in models {
        let maps = column_maps(column, pictures);
        for ((row, map), picture) in rows.iter_mut().zip(maps).zip(&seen) {
            row.push(overlay(picture, &map, opacity, tile));
        }
    }
    rows
}

/// Where the original and the edited model look, on the same pictures of the forget dataset.
#[derive(Clone, Debug)]
pub struct Heatmaps {
    /// Rows of picture | original | edited, with the colour scale.
    pub sheet: RgbImage,
    /// Each row's class.
    pub classes: Vec<String>,
    /// What the maps are, e.g. "Grad-CAM toward each picture's class".
    pub method: String,
}

/// The heatmaps of a result: up to `per_group` pictures of the forgotten classes, then as many
/// of the other classes, from the forget dataset, each model's map made toward the picture's
/// class (its prompts, averaged as the zero-shot head does); `None` when no picture could be
/// read.
pub fn before_after(
    original: &LoadedModel,
    edited: &LoadedModel,
    plan: &EvalPlan,
    per_group: usize,
) -> Option<Heatmaps> {
    let mut chosen = Vec::new();
    for forgotten in [true, false] {
        chosen.extend(
            plan.head
                .items
                .iter()
                .filter(|item| plan.targets.contains(&item.label) == forgotten)
                .filter_map(|item| Some((item.source.image().ok()?, item.label)))
                .take(per_group),
        );
    }
    if chosen.is_empty() {
        return None;
    }
    let (pictures, labels): (Vec<_>, Vec<_>) = chosen.into_iter().unzip();
    let models = [
        class_column(original, plan, &labels),
        class_column(edited, plan, &labels),
    ];
    let sheet = comparison_sheet(&panel_rows(&models, &pictures, REPORT_OPACITY, 160), 160);
    let classes = labels
        .into_iter()
        .map(|l| plan.head.classes[l].clone())
        .collect();
    Some(Heatmaps {
        sheet,
        classes,
        method: format!(
            "{} toward each picture's class",
            method_name_toward(&edited.model)
        ),
    })
}

/// `loaded`'s column with its maps made toward each picture's class: the head's class
/// embeddings, one row per picture of class `labels[i]`.
fn class_column<'a>(loaded: &'a LoadedModel, plan: &EvalPlan, labels: &[usize]) -> Column<'a> {
    let classes = class_embeddings(loaded, &plan.head.classes, &plan.head.templates);
    let rows = index_tensor(labels, &classes.device());
    (
        &loaded.model,
        &loaded.preprocessor,
        Some(classes.select(0, rows)),
    )
}
