//! The Method panel: the registered methods in plain words, presets, and every setting with its
//! paper default, edited as the recipe's `[method]` table.

use eframe::egui;

use super::LetheApp;
use crate::unlearn::methods::{Preset, REGISTRY, UnlearningMethod, find, known_settings};

/// Draws the Method panel.
pub fn ui(app: &mut LetheApp, ui: &mut egui::Ui) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading("Method");
        recipe_buttons(app, ui);
        method_choice(app, ui);
        let Ok(method) = find(&app.workspace.recipe.method.name) else {
            return;
        };
        ui.add_space(6.0);
        ui.label(egui::RichText::new(method.summary()));
        ui.label(egui::RichText::new(format!("Needs: {}", method.needs())).italics());
        ui.separator();
        ui.horizontal(|ui| {
            ui.label("Preset")
                .on_hover_text("A starting point for the settings below; changing a preset replaces them.");
            for preset in Preset::ALL {
                if ui
                    .selectable_label(app.workspace.preset == preset, preset.name())
                    .on_hover_text(preset.help())
                    .clicked()
                {
                    app.workspace.preset = preset;
                    app.workspace.recipe.method.settings = method.preset(preset);
                }
            }
        });
        if let Some(warning) = method.warning(&app.workspace.recipe.method.settings) {
            ui.colored_label(ui.visuals().warn_fg_color, warning);
        }
        ui.horizontal(|ui| {
            let label = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut app.workspace.recipe.seed))
                .labelled_by(label.id)
                .on_hover_text("Everything random in the run (synthetic images, noise) follows from it: the same seed gives the same result on the CPU.");
        });
        egui::CollapsingHeader::new("Advanced settings")
            .default_open(true)
            .show(ui, |ui| {
                ui.label("Bold values differ from the paper's default; hover a name for what it means.");
                settings_editor(
                    ui,
                    "settings",
                    method,
                    &method.defaults(),
                    &mut app.workspace.recipe.method.settings,
                );
            });
        egui::CollapsingHeader::new("Recipe (TOML)").show(ui, |ui| {
            ui.label("The run as a recipe: `lethe run` on the command line gives the same result.");
            let mut text = app.workspace.recipe.to_toml();
            ui.add(
                egui::TextEdit::multiline(&mut text)
                    .code_editor()
                    .interactive(false)
                    .desired_width(f32::INFINITY),
            );
        });
    });
}

/// One radio button per registered method. Switching keeps the settings the new method also
/// has and drops the others, so the recipe stays valid.
fn method_choice(app: &mut LetheApp, ui: &mut egui::Ui) {
    let method = &mut app.workspace.recipe.method;
    for info in REGISTRY {
        if ui
            .radio(method.name == info.name(), info.title())
            .on_hover_text(info.summary())
            .clicked()
            && method.name != info.name()
        {
            method.name = info.name().to_string();
            method.settings = known_settings(*info, &method.settings);
        }
    }
}

/// Open a recipe file into the workspace, or save the scenario as one.
fn recipe_buttons(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        if ui
            .button("Open recipe…")
            .on_hover_text("Load a recipe file (as `lethe run` takes) into the workspace.")
            .clicked()
            && let Some(path) = rfd::FileDialog::new()
                .add_filter("recipe", &["toml"])
                .pick_file()
        {
            match app.workspace.open_recipe(&path) {
                Ok(()) => app.notify(format!("Opened {}", path.display()), false),
                Err(error) => app.notify(format!("{error:#}"), true),
            }
        }
        if ui
            .button("Save recipe…")
            .on_hover_text("Save the scenario as a recipe for `lethe run`.")
            .clicked()
            && let Some(path) = rfd::FileDialog::new()
                .set_file_name("recipe.toml")
                .save_file()
        {
            let text = app.workspace.recipe.to_toml();
            match crate::atomic::write_file(&path, text.as_bytes()) {
                Ok(()) => app.notify(format!("Saved {}", path.display()), false),
                Err(error) => app.notify(format!("{error:#}"), true),
            }
        }
    });
}

/// Edits `settings` (only keys that differ from `defaults` are kept) with one row per key of
/// `defaults`, nested tables indented.
fn settings_editor(
    ui: &mut egui::Ui,
    id: &str,
    method: &dyn UnlearningMethod,
    defaults: &toml::Table,
    settings: &mut toml::Table,
) {
    egui::Grid::new(id)
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            for (key, default) in defaults {
                if let toml::Value::Table(nested_defaults) = default {
                    ui.label(key).on_hover_text(method.help(key));
                    ui.end_row();
                    let mut nested = match settings.get(key) {
                        Some(toml::Value::Table(t)) => t.clone(),
                        _ => toml::Table::new(),
                    };
                    ui.label("");
                    ui.vertical(|ui| {
                        settings_editor(
                            ui,
                            &format!("{id}.{key}"),
                            method,
                            nested_defaults,
                            &mut nested,
                        )
                    });
                    ui.end_row();
                    if nested.is_empty() {
                        settings.remove(key);
                    } else {
                        settings.insert(key.clone(), toml::Value::Table(nested));
                    }
                    continue;
                }
                let mut value = settings
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| default.clone());
                let changed = &value != default;
                let name = if changed {
                    egui::RichText::new(key).strong()
                } else {
                    egui::RichText::new(key)
                };
                let label = ui.label(name).on_hover_text(method.help(key));
                value_editor(ui, &mut value, label.id);
                ui.horizontal(|ui| {
                    ui.weak(format!("default {}", default_text(default)));
                    if changed && ui.small_button("reset").clicked() {
                        value = default.clone();
                    }
                });
                ui.end_row();
                if &value == default {
                    settings.remove(key);
                } else {
                    settings.insert(key.clone(), value);
                }
            }
        });
}

fn default_text(value: &toml::Value) -> String {
    match value {
        // Settings are single precision; print them as such (0.2, not 0.20000000298).
        toml::Value::Float(f) => format!("{}", *f as f32),
        toml::Value::Array(items) => format!(
            "({})",
            items
                .iter()
                .map(default_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// One editor for a setting's value, by its TOML type.
fn value_editor(ui: &mut egui::Ui, value: &mut toml::Value, label: egui::Id) {
    match value {
        toml::Value::Float(f) => {
            let speed = (f.abs() * 0.01).max(1e-6);
            ui.add(
                egui::DragValue::new(f)
                    .speed(speed)
                    .range(0.0..=f64::MAX)
                    .max_decimals(6),
            )
            .labelled_by(label);
        }
        toml::Value::Integer(i) => {
            ui.add(egui::DragValue::new(i).range(0..=100_000))
                .labelled_by(label);
        }
        toml::Value::Boolean(b) => {
            ui.checkbox(b, "").labelled_by(label);
        }
        toml::Value::Array(items) => {
            ui.horizontal(|ui| {
                for item in items.iter_mut() {
                    value_editor(ui, item, label);
                }
            });
        }
        other => {
            ui.label(other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::unlearn::methods::{Preset, find};

    #[test]
    fn the_retain_term_with_a_lipschitz_loss_is_warned_about() {
        let warning =
            |name: &str, settings: &str| find(name).unwrap().warning(&settings.parse().unwrap());
        assert!(warning("lip", "retain_weight = 1.0").is_some());
        assert!(warning("ulip", "retain_weight = 1").is_some());
        assert!(warning("emb", "retain_weight = 1.0").is_none());
        assert!(warning("lip", "learning_rate = 1e-3").is_none());
        let emb = find("emb").unwrap();
        assert!(emb.warning(&emb.preset(Preset::Careful)).is_none());
    }
}
