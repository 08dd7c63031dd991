//! A finished batch in the Results panel: its verdict and every check, one row per concept,
//! and each concept's accuracy after each run (does forgetting B bring A back?). The batch is
//! already written to its folder, exactly as `lethe run` writes a batch recipe's result.

use std::path::PathBuf;

use eframe::egui;

use super::results::{check_grid, estimate_cell, verdict_colour, verdict_line};
use crate::batch::{BatchResult, CONCEPT_COLUMNS};
use crate::recipe::{BatchMode, Recipe};

/// One finished batch, kept for the history.
pub struct BatchRecord {
    /// Run number since the app started (runs and batches share the count).
    pub id: usize,
    /// The batch recipe that ran.
    pub recipe: Recipe,
    /// Where the batch was written.
    pub folder: PathBuf,
    /// What it found.
    pub result: BatchResult,
}

impl BatchRecord {
    /// Wraps a finished batch.
    pub fn new(id: usize, recipe: Recipe, folder: PathBuf, result: BatchResult) -> Self {
        Self {
            id,
            recipe,
            folder,
            result,
        }
    }

    /// One line: method, concepts, how they ran, the verdict.
    pub fn headline(&self) -> String {
        let names: Vec<&str> = self
            .result
            .concepts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let mode = match self.result.mode {
            BatchMode::Sequential => "one after another",
            BatchMode::Joint => "jointly",
        };
        let verdict = self
            .result
            .verdict
            .map_or(String::new(), |v| format!(": {}", v.word()));
        format!(
            "#{} batch: {} forgot {} {mode}{verdict}",
            self.id,
            self.recipe.method.name,
            names.join(", ")
        )
    }
}

/// Draws a finished batch.
pub fn ui(record: &BatchRecord, ui: &mut egui::Ui) {
    let batch = &record.result;
    ui.heading(record.headline());
    ui.horizontal(|ui| {
        ui.label(format!("Written to {}", record.folder.display()))
            .on_hover_text("The edited checkpoint, batch.json, report.md and, for batches run one after another, each concept's own result folder.");
        if ui
            .button("Copy path")
            .on_hover_text("Copy the batch folder's path.")
            .clicked()
        {
            ui.ctx().copy_text(record.folder.display().to_string());
        }
    });
    if let Some(verdict) = batch.verdict {
        verdict_line(ui, verdict);
    }
    ui.add_space(8.0);
    ui.strong("Concepts");
    egui::Grid::new("batch_concepts")
        .striped(true)
        .show(ui, |ui| {
            for heading in CONCEPT_COLUMNS {
                ui.strong(heading);
            }
            ui.end_row();
            for c in &batch.concepts {
                ui.label(&c.name);
                ui.label(c.classes.join(", "));
                estimate_cell(ui, c.target.as_ref().map(|t| &t.before));
                estimate_cell(ui, c.target.as_ref().map(|t| &t.after));
                estimate_cell(ui, c.target_at_end.as_ref());
                match c.avg_score {
                    Some(score) => ui.label(format!("{score:.3}")),
                    None => ui.weak("–"),
                };
                match c.verdict {
                    Some(v) => ui.colored_label(verdict_colour(v), v.word()),
                    None => ui.weak("–"),
                };
                ui.end_row();
            }
        });
    ui.add_space(8.0);
    ui.strong("Each concept's accuracy through the batch")
        .on_hover_text("A concept forgotten early that climbs back in a later row was brought back by a later run.");
    egui::Grid::new("batch_cross_effects")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("after");
            for c in &batch.concepts {
                ui.strong(&c.name);
            }
            ui.end_row();
            for row in &batch.cross_effects {
                ui.label(&row.after);
                for target in &row.targets {
                    estimate_cell(ui, target.as_ref());
                }
                ui.end_row();
            }
        });
    let concepts: Vec<String> = batch
        .concepts
        .iter()
        .flat_map(|c| c.checks.iter().map(|_| c.name.clone()))
        .chain(batch.batch_checks.iter().map(|_| "whole batch".to_string()))
        .collect();
    if !concepts.is_empty() {
        ui.add_space(8.0);
        egui::CollapsingHeader::new(format!("Every check ({})", concepts.len()))
            .default_open(true)
            .show(ui, |ui| {
                check_grid(ui, "batch_checks", Some(&concepts), batch.checks())
            });
    }
}
