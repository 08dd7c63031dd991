//! The Sets panel: what to forget (class names and/or images), what to keep, what to judge on.

use std::sync::Arc;

use eframe::egui::{self, Color32};

use super::LetheApp;
use super::browser::View;
use super::sets::{Role, Rule, SubgroupSets};
use super::task::{Task, take_finished};
use crate::data::dataset;

/// The colour that marks a set's images in the grids.
pub fn role_colour(role: Role) -> Color32 {
    match role {
        Role::Forget => Color32::from_rgb(220, 70, 60),
        Role::Retain => Color32::from_rgb(60, 170, 90),
        Role::Eval => Color32::from_rgb(70, 130, 220),
    }
}

/// Which kind of rule the rule builder is set to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleKind {
    /// Label is ….
    #[default]
    LabelIs,
    /// Caption contains ….
    CaptionContains,
    /// Similarity to a text above a threshold.
    SimilarTo,
}

/// Panel state that is not saved with the workspace.
pub struct SetsUi {
    head_spec: String,
    head_classes: Vec<String>,
    head_task: Option<Task<Result<Vec<String>, String>>>,
    head_error: Option<String>,
    rule: RuleKind,
    rule_class: String,
    rule_text: String,
    threshold: f32,
    role: Role,
    new_eval: String,
    subgroup_name: String,
    subgroup_rule: String,
    /// An evaluation dataset being checked (opened) before it is added.
    eval_check: Option<Task<Result<String, String>>>,
}

impl Default for SetsUi {
    fn default() -> Self {
        Self {
            head_spec: String::new(),
            head_classes: Vec::new(),
            head_task: None,
            head_error: None,
            rule: RuleKind::LabelIs,
            rule_class: String::new(),
            rule_text: String::new(),
            threshold: 0.25,
            role: Role::Forget,
            new_eval: String::new(),
            subgroup_name: String::new(),
            subgroup_rule: String::new(),
            eval_check: None,
        }
    }
}

impl SetsUi {
    /// The class names of the zero-shot head, re-read in the background when its spec changes.
    fn head_classes(&mut self, spec: &str, ctx: &egui::Context) -> &[String] {
        if let Some(result) = take_finished(&mut self.head_task) {
            match result.and_then(|r| r) {
                Ok(classes) => {
                    self.head_classes = classes;
                    self.head_error = None;
                }
                Err(error) => {
                    self.head_classes.clear();
                    self.head_error = Some(error);
                }
            }
        }
        if self.head_spec != spec {
            self.head_spec = spec.to_string();
            let spec = spec.to_string();
            self.head_task = Some(Task::spawn("reading the zero-shot head", ctx, move || {
                dataset::open(&spec)
                    .map(|d| d.classes)
                    .map_err(|e| e.to_string())
            }));
        }
        &self.head_classes
    }
}

/// Draws the Sets panel.
pub fn ui(app: &mut LetheApp, ui: &mut egui::Ui) {
    egui::Panel::right("sets_side")
        .resizable(true)
        .default_size(380.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                concept(app, ui);
                ui.separator();
                subgroup(app, ui);
                ui.separator();
                set_summary(app, ui);
                ui.separator();
                rules(app, ui);
                ui.separator();
                evaluation(app, ui);
            });
        });
    egui::CentralPanel::default().show(ui, |ui| {
        let Some(data) = app.browser.dataset.clone() else {
            ui.label(
                "Open a dataset in step 1 to pick images; a class name alone is enough for Lip.",
            );
            return;
        };
        ui.horizontal(|ui| {
            app.browser.view_switch(ui);
            ui.separator();
            // Truncated: an overflowing line would widen the grid or map below it.
            ui.add(
                egui::Label::new(format!(
                    "{} · {} selected (click, Shift/Ctrl-click, drag a rectangle; on the map, \
                     outline)",
                    data.name,
                    app.browser.selection.selected.len()
                ))
                .truncate(),
            );
        });
        ui.horizontal_wrapped(|ui| {
            for role in Role::ALL {
                if ui
                    .button(format!("Add to {}", role.name()))
                    .on_hover_text(format!(
                        "Put the selected images into the {} set",
                        role.name()
                    ))
                    .clicked()
                {
                    let picked = app.browser.selection.selected.clone();
                    let added = app.workspace.sets.add(role, picked);
                    app.notify(
                        format!("{added} image(s) added to the {} set", role.name()),
                        false,
                    );
                }
            }
            for role in Role::ALL {
                if ui.button(format!("Remove from {}", role.name())).clicked() {
                    let picked = app.browser.selection.selected.clone();
                    app.workspace.sets.remove(role, &picked);
                }
            }
            let selected = &app.browser.selection.selected;
            let single = (selected.len() == 1).then(|| selected.iter().copied().next());
            if ui
                .add_enabled(single.is_some(), egui::Button::new("Heatmaps"))
                .on_hover_text("Where the models look in the selected image (select one).")
                .clicked()
            {
                app.browser.heatmap_request = single.flatten();
            }
        });
        let sets = &app.workspace.sets;
        let marks = |i: usize| sets.role_of(i).map(role_colour);
        match app.browser.view {
            View::Grid => {
                app.browser
                    .show_grid(ui, "sets_grid", &data, &mut app.thumbnails, &marks, 72.0);
            }
            View::Map => {
                let model = app.model.loaded();
                app.browser
                    .show_map(ui, &data, model, &mut app.thumbnails, &marks);
            }
        }
    });
}

/// The forget classes: chosen by name from the zero-shot head.
fn concept(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.heading("What to forget");
    let label = ui.label("Zero-shot head (dataset spec)");
    ui.add(
        egui::TextEdit::singleline(&mut app.workspace.recipe.forget.dataset)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(label.id)
    .on_hover_text(
        "The dataset whose class names the model chooses between (zero-shot classification: the model compares a picture with a sentence for each class). Its images measure the forgotten class and the other classes.",
    );
    let spec = app.workspace.recipe.forget.dataset.clone();
    let classes = app.sets_ui.head_classes(&spec, ui.ctx()).to_vec();
    if let Some(error) = &app.sets_ui.head_error {
        ui.colored_label(ui.visuals().error_fg_color, error);
    }
    ui.label("Classes to forget:");
    let strays: Vec<String> = app
        .workspace
        .recipe
        .forget
        .classes
        .iter()
        .filter(|c| !classes.contains(c))
        .cloned()
        .collect();
    ui.horizontal_wrapped(|ui| {
        for class in classes.iter().chain(&strays) {
            let chosen = app.workspace.recipe.forget.classes.contains(class);
            if ui.selectable_label(chosen, class).clicked() {
                let list = &mut app.workspace.recipe.forget.classes;
                if chosen {
                    list.retain(|c| c != class);
                } else {
                    list.push(class.clone());
                }
            }
        }
    });
    let browsed = app.browser.dataset.clone();
    ui.horizontal_wrapped(|ui| {
        if ui
            .button("Add whole class to forget set")
            .on_hover_text("Add every browsed image of the chosen classes to the forget set.")
            .clicked()
            && let Some(data) = &browsed
        {
            let mut added = 0;
            for class in app.workspace.recipe.forget.classes.clone() {
                added += app
                    .workspace
                    .sets
                    .add(Role::Forget, Rule::LabelIs(class).select(data));
            }
            app.notify(format!("{added} image(s) added to the forget set"), false);
        }
        if ui
            .button("Add other classes to retain set")
            .on_hover_text(
                "Add every browsed image of the classes not chosen to the retain set: what a retain weight (Method) keeps answering as before.",
            )
            .clicked()
            && let Some(data) = &browsed
        {
            let others = Rule::LabelIsNone(app.workspace.recipe.forget.classes.clone());
            let added = app.workspace.sets.add(Role::Retain, others.select(data));
            app.notify(format!("{added} image(s) added to the retain set"), false);
        }
        if ui
            .button("Forget the forget set's classes")
            .on_hover_text("Set the classes to forget to those of the images in the forget set.")
            .clicked()
            && let Some(data) = &browsed
        {
            app.workspace.recipe.forget.classes = app.workspace.sets.forget_classes(data);
        }
    });
    let workspace = &mut app.workspace;
    if ui
        .checkbox(
            &mut workspace.use_forget_images,
            "Forget with the picked forget images",
        )
        .on_hover_text(
            "Off: the method synthesises pictures of the class from the model itself (Lip needs no images). On: it uses the images of the forget set instead.",
        )
        .changed()
        && workspace.use_forget_images
    {
        workspace.verify_with_forget_images = false;
    }
    if ui
        .checkbox(
            &mut workspace.verify_with_forget_images,
            "Judge the stop on the picked forget images",
        )
        .on_hover_text(
            "The method still learns from synthetic pictures, but stops only once it no longer recognises these real pictures, which it never trains on. Synthetic pictures are often forgotten long before real ones.",
        )
        .changed()
        && workspace.verify_with_forget_images
    {
        workspace.use_forget_images = false;
    }
}

/// A subgroup inside the class to forget, picked by a caption rule.
fn subgroup(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.heading("Only a subgroup")
        .on_hover_text("Forget part of a class (red stars) and keep the rest of it (the other stars): the subgroup method's scenario.");
    if let Some(subgroup) = &app.workspace.sets.subgroup {
        let sets = &app.workspace.sets;
        ui.label(format!(
            "Forgetting '{}' inside '{}': {} of its pictures to forget, {} to judge the stop on and {} to measure it on; {} sibling pictures measured; the retain set ({}) is trained on and the evaluation split ({}) chooses the soup.",
            subgroup.name,
            subgroup.class,
            sets.forget.len(),
            subgroup.verify.len(),
            subgroup.target.len(),
            subgroup.siblings.len(),
            sets.retain.len(),
            sets.eval.len()
        ));
        if ui
            .button("Forget the whole class instead")
            .on_hover_text("Drop the subgroup; the sets stay as they are.")
            .clicked()
        {
            app.workspace.sets.subgroup = None;
            app.workspace.recipe.subgroup = None;
        }
        return;
    }
    let state = &mut app.sets_ui;
    ui.horizontal(|ui| {
        let label = ui.label("Subgroup name");
        ui.text_edit_singleline(&mut state.subgroup_name)
            .labelled_by(label.id)
            .on_hover_text(
                "What the subgroup is called, e.g. red star; it is forgotten under this name too.",
            );
    });
    ui.horizontal(|ui| {
        let label = ui.label("Caption contains");
        ui.text_edit_singleline(&mut state.subgroup_rule)
            .labelled_by(label.id)
            .on_hover_text("The rule inside the class: pictures whose caption contains this text (empty: the name).");
    });
    let classes = &app.workspace.recipe.forget.classes;
    let class = (classes.len() == 1).then(|| classes[0].clone());
    let data = app.browser.dataset.clone();
    let ready = class.is_some() && data.is_some();
    if ui
        .add_enabled(ready, egui::Button::new("Build subgroup sets"))
        .on_hover_text("Replace the sets: a third of the subgroup's pictures to forget, a third to judge the stop on and a third to measure; half its siblings' pictures and of every other class to keep, the other half to measure and to choose the soup.")
        .on_disabled_hover_text("Open a dataset in step 1 and choose exactly one class to forget above.")
        .clicked()
        && let (Some(class), Some(data)) = (class, data)
    {
        let (name, rule) = (state.subgroup_name.clone(), state.subgroup_rule.clone());
        match SubgroupSets::build(&mut app.workspace.sets, &data, &class, &name, &rule) {
            Ok(()) => {
                app.workspace.use_forget_images = true;
                app.workspace.verify_with_forget_images = false;
                app.notify(
                    format!(
                        "Subgroup sets built: {} picture(s) of '{}' to forget. The subgroup method (step 3) is made for this.",
                        app.workspace.sets.forget.len(),
                        name.trim()
                    ),
                    false,
                );
            }
            Err(problem) => app.notify(problem, true),
        }
    }
}

/// Counts, overlaps and warnings.
fn set_summary(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.heading("Sets");
    egui::Grid::new("set_counts").show(ui, |ui| {
        for role in Role::ALL {
            ui.colored_label(role_colour(role), role.name());
            ui.label(format!("{} image(s)", app.workspace.sets.get(role).len()));
            if ui.small_button("clear").clicked() {
                app.workspace.sets.get_mut(role).clear();
            }
            if ui
                .small_button("select")
                .on_hover_text("Select these images in the grid")
                .clicked()
            {
                app.browser.selection.selected = app.workspace.sets.get(role).clone();
            }
            ui.end_row();
        }
    });
    let browsed = app.browser.dataset.clone();
    let warnings = app.workspace.sets.warnings(
        browsed.as_deref(),
        &app.sets_ui.head_classes,
        &app.workspace.recipe.forget.classes,
        app.workspace.uses_forget_set(),
    );
    for warning in warnings {
        ui.colored_label(ui.visuals().warn_fg_color, format!("Warning: {warning}"));
    }
    if !app.workspace.sets.retain.is_empty() || !app.workspace.sets.eval.is_empty() {
        ui.label("The retain set and the evaluation split are measured before and after as extra datasets. With a retain weight (Method), the retain set is also what the method keeps answering as before.");
    }
}

/// The rule builder.
fn rules(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.heading("Pick by rule");
    let Some(data) = app.browser.dataset.clone() else {
        return;
    };
    let state = &mut app.sets_ui;
    ui.horizontal(|ui| {
        ui.selectable_value(&mut state.rule, RuleKind::LabelIs, "label is");
        ui.selectable_value(&mut state.rule, RuleKind::CaptionContains, "caption contains");
        ui.selectable_value(&mut state.rule, RuleKind::SimilarTo, "similar to text")
            .on_hover_text("CLIP similarity: how close the model puts the picture and the text (cosine of their embeddings).");
    });
    match state.rule {
        RuleKind::LabelIs => {
            egui::ComboBox::from_label("class")
                .selected_text(if state.rule_class.is_empty() {
                    "choose a class".to_string()
                } else {
                    state.rule_class.clone()
                })
                .show_ui(ui, |ui| {
                    for class in &data.classes {
                        ui.selectable_value(&mut state.rule_class, class.clone(), class);
                    }
                });
        }
        RuleKind::CaptionContains | RuleKind::SimilarTo => {
            let label = ui.label("text");
            ui.text_edit_singleline(&mut state.rule_text)
                .labelled_by(label.id);
        }
    }
    if state.rule == RuleKind::SimilarTo {
        ui.add(egui::Slider::new(&mut state.threshold, -0.2..=0.6).text("threshold"))
            .on_hover_text("Pick images whose similarity to the text is at least this.");
    }
    ui.horizontal(|ui| {
        ui.label("into");
        for role in Role::ALL {
            ui.selectable_value(&mut state.role, role, format!("{} set", role.name()));
        }
    });
    let apply = ui.button("Apply rule").clicked();
    if !apply {
        return;
    }
    let rule = match state.rule {
        RuleKind::LabelIs => Some(Rule::LabelIs(state.rule_class.clone())),
        RuleKind::CaptionContains => Some(Rule::CaptionContains(state.rule_text.clone())),
        RuleKind::SimilarTo => {
            app.browser
                .text_scores(&state.rule_text)
                .map(|scores| Rule::SimilarAbove {
                    scores,
                    threshold: state.threshold,
                })
        }
    };
    let role = state.role;
    match rule {
        Some(rule) => {
            let added = app.workspace.sets.add(role, rule.select(&data));
            app.notify(
                format!("{added} image(s) added to the {} set", role.name()),
                false,
            );
        }
        None => {
            let text = app.sets_ui.rule_text.clone();
            let model = app.model.loaded().map(Arc::clone);
            app.browser.rank_by_text(text, model.as_ref(), ui.ctx());
            app.notify(
                "Computing similarities first (embedding the images); apply the rule again when the ranking is ready.",
                false,
            );
        }
    }
}

/// The evaluation datasets.
fn evaluation(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.heading("Judge on")
        .on_hover_text("Datasets measured before and after; their accuracy should not drop.");
    let mut remove = None;
    for (i, spec) in app.workspace.recipe.eval.datasets.iter().enumerate() {
        ui.horizontal(|ui| {
            if ui.small_button("remove").on_hover_text("Remove").clicked() {
                remove = Some(i);
            }
            ui.label(spec);
        });
    }
    if let Some(i) = remove {
        app.workspace.recipe.eval.datasets.remove(i);
    }
    ui.horizontal(|ui| {
        let label = ui.label("Add");
        ui.add(
            egui::TextEdit::singleline(&mut app.sets_ui.new_eval)
                .hint_text("shapes:fruits?seed=9&n=300, folder:…, manifest:…"),
        )
        .labelled_by(label.id);
        let idle = app.sets_ui.eval_check.is_none();
        if ui
            .add_enabled(idle, egui::Button::new("Add dataset"))
            .clicked()
            && !app.sets_ui.new_eval.trim().is_empty()
        {
            // Opened in the background first: a large folder takes a while to list.
            let spec = app.sets_ui.new_eval.trim().to_string();
            app.sets_ui.eval_check =
                Some(Task::spawn("checking the dataset", ui.ctx(), move || {
                    dataset::open(&spec)
                        .map(|_| spec)
                        .map_err(|e| e.to_string())
                }));
        }
        match take_finished(&mut app.sets_ui.eval_check).map(|r| r.and_then(|r| r)) {
            Some(Ok(spec)) => {
                app.workspace.recipe.eval.datasets.push(spec);
                app.sets_ui.new_eval.clear();
            }
            Some(Err(error)) => app.notify(error, true),
            None => {}
        }
    });
}
