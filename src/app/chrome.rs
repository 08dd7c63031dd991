//! The frame around the panels: top bar (model, theme, zoom), left navigation of the five
//! steps, status bar (device, pending work, messages), keyboard shortcuts and their overlay.

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers};

use super::workspace::Workspace;
use super::{LetheApp, Page};

/// Every keyboard shortcut with what it does, as the help overlay lists them.
pub const SHORTCUTS: [(&str, &str); 10] = [
    (
        "Ctrl+1 … Ctrl+5",
        "Go to step 1–5 (Data, Sets, Method, Run, Results)",
    ),
    ("Ctrl+R", "Run the method"),
    ("Ctrl+Shift+R", "Run the queue of concepts"),
    ("Escape", "Cancel the run / close this overlay"),
    ("Ctrl+A", "Select every visible image"),
    ("Ctrl+F", "Add the selected images to the forget set"),
    ("Ctrl+K", "Add the selected images to the retain set"),
    ("Ctrl+Plus / Ctrl+Minus", "Zoom in / out"),
    ("Ctrl+T", "Switch between the light and dark theme"),
    ("F1", "Show or hide this overlay"),
];

/// Applies the saved theme and zoom.
pub fn apply_look(ctx: &egui::Context, workspace: &Workspace) {
    ctx.set_theme(if workspace.dark {
        egui::Theme::Dark
    } else {
        egui::Theme::Light
    });
    ctx.set_zoom_factor(workspace.zoom);
}

fn pressed(ctx: &egui::Context, modifiers: Modifiers, key: Key) -> bool {
    ctx.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(modifiers, key)))
}

/// Handles the keyboard shortcuts.
pub fn shortcuts(app: &mut LetheApp, ctx: &egui::Context) {
    let pages = [Key::Num1, Key::Num2, Key::Num3, Key::Num4, Key::Num5];
    for (key, page) in pages.into_iter().zip(Page::ALL) {
        if pressed(ctx, Modifiers::COMMAND, key) {
            app.page = page;
        }
    }
    if pressed(ctx, Modifiers::NONE, Key::F1) {
        app.help_open = !app.help_open;
    }
    if pressed(ctx, Modifiers::NONE, Key::Escape) {
        if app.help_open {
            app.help_open = false;
        } else if app.runner.is_running() {
            app.runner.cancel();
        }
    }
    // While a text field has the keyboard, its own Ctrl+A/F/K/T/R/+/- win.
    if ctx.egui_wants_keyboard_input() {
        return;
    }
    // Before Ctrl+R, which would also match it (extra Shift is ignored in matching).
    if pressed(ctx, Modifiers::COMMAND | Modifiers::SHIFT, Key::R) {
        app.start_run(ctx, super::run_panel::Start::Queue);
    }
    if pressed(ctx, Modifiers::COMMAND, Key::R) {
        app.start_run(ctx, super::run_panel::Start::Scenario);
    }
    if pressed(ctx, Modifiers::COMMAND, Key::A) {
        let visible = app.browser.visible().to_vec();
        app.browser.selection.selected.extend(visible);
    }
    for (key, role) in [
        (Key::F, super::sets::Role::Forget),
        (Key::K, super::sets::Role::Retain),
    ] {
        if pressed(ctx, Modifiers::COMMAND, key) {
            let picked = app.browser.selection.selected.clone();
            let added = app.workspace.sets.add(role, picked);
            app.notify(
                format!("{added} image(s) added to the {} set", role.name()),
                false,
            );
        }
    }
    if pressed(ctx, Modifiers::COMMAND, Key::Plus) || pressed(ctx, Modifiers::COMMAND, Key::Equals)
    {
        zoom(app, ctx, 0.1);
    }
    if pressed(ctx, Modifiers::COMMAND, Key::Minus) {
        zoom(app, ctx, -0.1);
    }
    if pressed(ctx, Modifiers::COMMAND, Key::T) {
        app.workspace.dark = !app.workspace.dark;
        apply_look(ctx, &app.workspace);
    }
}

fn zoom(app: &mut LetheApp, ctx: &egui::Context, by: f32) {
    app.workspace.zoom = ((app.workspace.zoom + by) * 10.0).round() / 10.0;
    app.workspace.zoom = app.workspace.zoom.clamp(0.7, 2.0);
    apply_look(ctx, &app.workspace);
}

/// The top bar: app name, the model field, theme and zoom, help.
pub fn top_bar(app: &mut LetheApp, ui: &mut egui::Ui) {
    egui::Panel::top("top_bar").show(ui, |ui| {
        ui.horizontal_wrapped(|ui| {
            ui.heading("Lethe");
            ui.separator();
            let label = ui.label("Model");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut app.workspace.recipe.model.path)
                        .desired_width(220.0)
                        .hint_text("checkpoint folder or demo:vit"),
                )
                .labelled_by(label.id)
                .on_hover_text(
                    "A CLIP checkpoint folder (Hugging Face or open_clip safetensors) or a built-in demo model: demo:vit, demo:rn. It loads when you press Enter or leave the field.",
                );
            // Leaving the field loads what was typed, so the model browsed with is always the
            // one a run opens.
            let left_changed =
                field.lost_focus() && app.workspace.recipe.model.path.trim() != app.model.spec;
            if ui
                .button("Open checkpoint…")
                .on_hover_text("Pick a checkpoint folder. Lethe never writes to it.")
                .clicked()
                && let Some(folder) = rfd::FileDialog::new().pick_folder()
            {
                app.workspace.recipe.model.path = folder.display().to_string();
                load_model(app, ui.ctx());
            } else if left_changed {
                load_model(app, ui.ctx());
            }
            for demo in ["demo:vit", "demo:rn"] {
                if ui
                    .selectable_label(app.model.spec == demo, demo)
                    .on_hover_text("A small CLIP trained on the Shapes world, shipped with Lethe.")
                    .clicked()
                {
                    app.workspace.recipe.model.path = demo.into();
                    load_model(app, ui.ctx());
                }
            }
            // Laid out in one flow that wraps, so nothing overlaps at large zoom factors.
            ui.separator();
            if ui.button("-").on_hover_text("Zoom out (Ctrl+Minus)").clicked() {
                zoom(app, ui.ctx(), -0.1);
            }
            ui.label(format!("{:.0}%", app.workspace.zoom * 100.0));
            if ui.button("+").on_hover_text("Zoom in (Ctrl+Plus)").clicked() {
                zoom(app, ui.ctx(), 0.1);
            }
            let theme = if app.workspace.dark {
                "Light theme"
            } else {
                "Dark theme"
            };
            if ui.button(theme).on_hover_text("Ctrl+T").clicked() {
                app.workspace.dark = !app.workspace.dark;
                apply_look(ui.ctx(), &app.workspace);
            }
            if ui.button("Help (F1)").clicked() {
                app.help_open = true;
            }
        });
    });
}

fn load_model(app: &mut LetheApp, ctx: &egui::Context) {
    let recipe = &app.workspace.recipe;
    app.model
        .load(ctx, &recipe.model.path, &recipe.model.device);
}

/// The left navigation: the five steps.
pub fn navigation(app: &mut LetheApp, ui: &mut egui::Ui) {
    egui::Panel::left("navigation")
        .resizable(false)
        .exact_size(130.0)
        .show(ui, |ui| {
            ui.add_space(8.0);
            for page in Page::ALL {
                let label = ui
                    .selectable_label(app.page == page, page.title())
                    .on_hover_text(page.purpose());
                if label.clicked() {
                    app.page = page;
                }
            }
        });
}

/// The status bar: device, pending work and the last message.
pub fn status_bar(app: &mut LetheApp, ui: &mut egui::Ui) {
    egui::Panel::bottom("status_bar").show(ui, |ui| {
        ui.horizontal(|ui| {
            match (app.model.device(), &app.model.error) {
                (_, Some(error)) => {
                    ui.colored_label(ui.visuals().error_fg_color, "model: not loaded")
                        .on_hover_text(error);
                }
                (Some(device), None) => {
                    ui.label(format!("{} on {device}", app.model.spec));
                }
                (None, None) => {
                    ui.label(format!("loading {}", app.model.spec));
                }
            }
            ui.separator();
            let mut pending = Vec::new();
            if let Some(what) = app.model.pending() {
                pending.push(what.to_string());
            }
            if let Some(activity) = app.browser.activity() {
                pending.push(activity);
            }
            if let Some(phase) = app.runner.phase() {
                pending.push(format!("run: {phase}"));
            }
            let thumbnails = app.thumbnails.pending();
            if thumbnails > 0 {
                pending.push(format!("{thumbnails} thumbnail(s)"));
            }
            // Text only: an animated spinner would repaint the window continuously, and on a
            // software renderer that takes CPU time from the run.
            if pending.is_empty() {
                ui.label("idle");
            } else {
                ui.label(format!("working: {}", pending.join(" · ")));
            }
            if let Some(notice) = &app.notice {
                ui.separator();
                let colour = if notice.error {
                    ui.visuals().error_fg_color
                } else {
                    ui.visuals().text_color()
                };
                ui.colored_label(colour, &notice.text);
            }
        });
    });
}

/// The keyboard-shortcut overlay.
pub fn help_overlay(app: &mut LetheApp, ctx: &egui::Context) {
    if !app.help_open {
        return;
    }
    let modal = egui::Modal::new(egui::Id::unique("help")).show(ctx, |ui| {
        ui.heading("Keyboard shortcuts");
        egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
            for (keys, action) in SHORTCUTS {
                ui.strong(keys);
                ui.label(action);
                ui.end_row();
            }
        });
        ui.add_space(8.0);
        ui.label("Hover over any setting or number to see what it means.");
        ui.button("Close").clicked()
    });
    if modal.inner || modal.should_close() {
        app.help_open = false;
    }
}
