//! The Method panel: the registered methods in plain words, presets, and every setting with its
//! paper default, edited as the recipe's `[method]` table.

use eframe::egui;

use super::LetheApp;
use crate::unlearn::lip::Variant;
use crate::unlearn::methods::{
    METHODS, Preset, default_settings, parse_settings, preset_settings, setting_help,
};

/// Draws the Method panel.
pub fn ui(app: &mut LetheApp, ui: &mut egui::Ui) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading("Method");
        recipe_buttons(app, ui);
        let method = &mut app.workspace.recipe.method;
        for info in METHODS {
            ui.radio_value(&mut method.name, info.name.to_string(), info.title)
                .on_hover_text(info.summary);
        }
        if let Some(info) = crate::unlearn::methods::method_info(&method.name) {
            ui.add_space(6.0);
            ui.label(egui::RichText::new(info.summary));
            ui.label(egui::RichText::new(format!("Needs: {}", info.needs)).italics());
        }
        ui.separator();
        ui.horizontal(|ui| {
            ui.label("Preset")
                .on_hover_text("A starting point for the settings below; changing a preset replaces them.");
            for preset in Preset::ALL {
                if ui
                    .selectable_label(app.workspace.preset == preset, preset.name())
                    .on_hover_text(preset_help(preset))
                    .clicked()
                {
                    app.workspace.preset = preset;
                    app.workspace.recipe.method.settings = preset_settings(preset);
                }
            }
        });
        if let Some(warning) = lip_retain_warning(&app.workspace.recipe.method) {
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
                    &default_settings(),
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

/// A warning when the retain term is combined with a Lipschitz loss, which it stops from
/// forgetting (measured on the demo models: red stays above 0.57 even at weight 0.01).
fn lip_retain_warning(method: &crate::recipe::MethodSection) -> Option<&'static str> {
    let lipschitz_with_retain = parse_settings(&method.name, &method.settings)
        .is_ok_and(|(variant, options)| variant != Variant::Emb && options.retain_weight > 0.0);
    lipschitz_with_retain.then_some(
        "With Lip's loss the retain term holds the class to forget in place as well: choose Emb to forget while keeping the rest.",
    )
}

fn preset_help(preset: Preset) -> &'static str {
    match preset {
        Preset::Gentle => {
            "The paper's settings: small steps; slow, and a small model may not forget fully."
        }
        Preset::Default => {
            "Sized for small models like the demo ones: forgets in well under a minute."
        }
        Preset::Careful => {
            "Holds the other classes' answers while forgetting (retain term), and leaves the layers every class shares alone. Made for Emb: with Lip the retain term holds the class to forget too."
        }
        Preset::Aggressive => {
            "Bigger and more steps: forgets harder, with more risk to other classes."
        }
    }
}

/// Edits `settings` (only keys that differ from `defaults` are kept) with one row per key of
/// `defaults`, nested tables indented.
fn settings_editor(
    ui: &mut egui::Ui,
    id: &str,
    defaults: &toml::Table,
    settings: &mut toml::Table,
) {
    egui::Grid::new(id)
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            for (key, default) in defaults {
                if let toml::Value::Table(nested_defaults) = default {
                    ui.label(key).on_hover_text(setting_help(key));
                    ui.end_row();
                    let mut nested = match settings.get(key) {
                        Some(toml::Value::Table(t)) => t.clone(),
                        _ => toml::Table::new(),
                    };
                    ui.label("");
                    ui.vertical(|ui| {
                        settings_editor(ui, &format!("{id}.{key}"), nested_defaults, &mut nested)
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
                let label = ui.label(name).on_hover_text(setting_help(key));
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
    use super::*;
    use crate::recipe::MethodSection;

    #[test]
    fn the_retain_term_with_a_lipschitz_loss_is_warned_about() {
        let method = |name: &str, settings: &str| MethodSection {
            name: name.into(),
            settings: settings.parse().unwrap(),
        };
        assert!(lip_retain_warning(&method("lip", "retain_weight = 1.0")).is_some());
        assert!(lip_retain_warning(&method("ulip", "retain_weight = 1")).is_some());
        assert!(lip_retain_warning(&method("emb", "retain_weight = 1.0")).is_none());
        assert!(lip_retain_warning(&method("lip", "learning_rate = 1e-3")).is_none());
        let careful = MethodSection {
            name: "emb".into(),
            settings: preset_settings(Preset::Careful),
        };
        assert!(lip_retain_warning(&careful).is_none());
    }
}
