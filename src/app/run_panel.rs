//! The Run panel: the scenario runs on a background thread through the same workflow as
//! `lethe run`; progress, live curves and Cancel, with the UI repainting throughout.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::LetheApp;
use super::results::RunRecord;
use super::workspace::Workspace;
use crate::data::dataset::Dataset;
use crate::data::subset::save_subset;
use crate::recipe::Recipe;
use crate::unlearn::job::Event;
use crate::workflow::{Before, Opened, RunStopped, execute_from, measure_before};

/// One unlearning step as the curves show it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPoint {
    /// 1-based step.
    pub step: usize,
    /// Seconds since unlearning started.
    pub seconds: f64,
    /// Named loss terms.
    pub losses: Vec<(String, f32)>,
    /// Accuracy on the forget images, when measured.
    pub forget_accuracy: Option<f64>,
    /// Accuracy on retained data, when measured.
    pub retain_accuracy: Option<f64>,
}

enum Message {
    Phase(&'static str),
    Step { point: StepPoint, max_steps: usize },
    Done(Result<Box<RunRecord>, String>),
}

/// The run in progress and the curves of the latest run.
#[derive(Default)]
pub struct Runner {
    receiver: Option<Receiver<Message>>,
    cancel: Arc<AtomicBool>,
    started: Option<Instant>,
    phase: Option<&'static str>,
    /// Steps so far.
    pub points: Vec<StepPoint>,
    /// The method's bound on steps.
    pub max_steps: usize,
    /// Runs started so far, to number them.
    runs: usize,
    /// The last "before" measurement, reused while the model, the data and the sets stay the
    /// same (only the method or its settings changed), so trying settings is quicker.
    before: Arc<Mutex<Option<(String, Before)>>>,
}

impl Runner {
    /// Whether a run is under way.
    pub fn is_running(&self) -> bool {
        self.receiver.is_some()
    }

    /// What the run is doing now.
    pub fn phase(&self) -> Option<&'static str> {
        self.phase
    }

    /// Asks the run to stop; it ends after the current step and keeps nothing.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Starts the workspace's scenario. Picked images are saved under `home` for the recipe.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        workspace: &Workspace,
        browsed: Option<Arc<Dataset>>,
        home: PathBuf,
    ) -> Result<(), String> {
        if workspace.recipe.forget.classes.is_empty() {
            return Err("Nothing to forget: choose a class in step 2 (Sets).".into());
        }
        if workspace.uses_forget_set() && (browsed.is_none() || workspace.sets.forget.is_empty()) {
            return Err(
                "The forget set's images are to be used, but the forget set is empty.".into(),
            );
        }
        let (sender, receiver) = mpsc::channel();
        self.receiver = Some(receiver);
        self.cancel = Arc::new(AtomicBool::new(false));
        self.started = Some(Instant::now());
        self.phase = Some("starting");
        self.points.clear();
        self.max_steps = 0;
        self.runs += 1;
        let job = RunJob {
            id: self.runs,
            before: Arc::clone(&self.before),
            workspace: workspace.clone(),
            browsed,
            home,
            cancel: Arc::clone(&self.cancel),
            sender,
            ctx: ctx.clone(),
        };
        thread::spawn(move || job.run());
        Ok(())
    }

    /// Takes in the run's messages; returns its outcome once it has ended.
    pub fn poll(&mut self, ctx: &egui::Context) -> Option<Result<RunRecord, String>> {
        let receiver = self.receiver.as_ref()?;
        ctx.request_repaint_after(Duration::from_millis(200));
        loop {
            match receiver.try_recv() {
                Ok(Message::Phase(phase)) => self.phase = Some(phase),
                Ok(Message::Step { point, max_steps }) => {
                    self.max_steps = max_steps;
                    self.points.push(point);
                }
                Ok(Message::Done(result)) => {
                    self.finish();
                    return Some(result.map(|mut record| {
                        record.curve = self.points.clone();
                        *record
                    }));
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    self.finish();
                    return Some(Err("the run stopped unexpectedly".into()));
                }
            }
        }
    }

    fn finish(&mut self) {
        self.receiver = None;
        self.phase = None;
    }

    /// Seconds since the run started.
    fn elapsed(&self) -> f64 {
        self.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
    }
}

/// What the background thread needs.
struct RunJob {
    id: usize,
    before: Arc<Mutex<Option<(String, Before)>>>,
    workspace: Workspace,
    browsed: Option<Arc<Dataset>>,
    home: PathBuf,
    cancel: Arc<AtomicBool>,
    sender: Sender<Message>,
    ctx: egui::Context,
}

impl RunJob {
    fn send(&self, message: Message) {
        let _ = self.sender.send(message);
        self.ctx.request_repaint();
    }

    fn run(self) {
        let result = self.work().map(Box::new).map_err(|e| format!("{e:#}"));
        self.send(Message::Done(result));
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            bail!(RunStopped::Cancelled { steps: 0 });
        }
        Ok(())
    }

    /// The recipe with the picked sets saved as manifests: forget images (when asked for, to
    /// train on or to judge the stop on), the retain set as the retain images of a method's
    /// retain term, and the retain set and evaluation split as extra evaluation datasets.
    fn recipe(&self) -> Result<Recipe> {
        let mut recipe = self.workspace.recipe.clone();
        let Some(browsed) = &self.browsed else {
            return Ok(recipe);
        };
        let sets = &self.workspace.sets;
        let folder = self.home.join("sets");
        let forget: Vec<usize> = sets.forget.iter().copied().collect();
        if self.workspace.use_forget_images {
            recipe.forget.images = Some(save_subset(browsed, &forget, &folder.join("forget"))?);
        }
        if self.workspace.verify_with_forget_images {
            recipe.forget.verify = Some(save_subset(browsed, &forget, &folder.join("verify"))?);
        }
        for (name, set) in [("retain", &sets.retain), ("eval", &sets.eval)] {
            if !set.is_empty() {
                let items: Vec<usize> = set.iter().copied().collect();
                let spec = save_subset(browsed, &items, &folder.join(name))?;
                if name == "retain" {
                    recipe.forget.retain = Some(spec.clone());
                }
                recipe.eval.datasets.push(spec);
            }
        }
        Ok(recipe)
    }

    /// What the "before" measurement depends on: the model, what is measured, the sets, and
    /// whether the picked forget images are the verification pictures (measured too).
    fn measurement_key(&self) -> String {
        let w = &self.workspace;
        format!(
            "{:?}{:?}{:?}{:?}{}{}",
            w.recipe.model,
            w.recipe.forget,
            w.recipe.eval,
            w.sets,
            w.browse,
            w.verify_with_forget_images
        )
    }

    /// Measures the model before unlearning, or reuses the last measurement of the same model,
    /// data and sets (its time then counts as zero).
    fn measure_before(&self, opened: &Opened) -> Before {
        let key = self.measurement_key();
        let cached = self.before.lock().ok().and_then(|slot| {
            slot.as_ref()
                .filter(|(k, _)| *k == key)
                .map(|(_, before)| before.clone())
        });
        if let Some(before) = cached {
            return Before {
                seconds: 0.0,
                ..before
            };
        }
        self.send(Message::Phase("measuring the model before"));
        let before = measure_before(opened);
        if let Ok(mut slot) = self.before.lock() {
            *slot = Some((key, before.clone()));
        }
        before
    }

    fn work(&self) -> Result<RunRecord> {
        self.send(Message::Phase("saving the picked images"));
        let recipe = self.recipe()?;
        let text = recipe.to_toml();
        self.check_cancel()?;
        self.send(Message::Phase("opening the model and data"));
        let opened = Opened::open(recipe, text)?;
        self.check_cancel()?;
        let before = self.measure_before(&opened);
        self.check_cancel()?;
        self.send(Message::Phase("making forget images"));
        let finished = execute_from(&opened, &before, &self.cancel, |event| match event {
            Event::Step {
                step,
                max_steps,
                report,
                elapsed,
            } => {
                self.send(Message::Phase("unlearning"));
                self.send(Message::Step {
                    point: StepPoint {
                        step: *step,
                        seconds: elapsed.as_secs_f64(),
                        losses: report.losses.clone(),
                        forget_accuracy: report.forget_accuracy,
                        retain_accuracy: report.retain_accuracy,
                    },
                    max_steps: *max_steps,
                });
            }
            Event::Ended(_) => self.send(Message::Phase("measuring the model after")),
        })?;
        Ok(RunRecord::new(self.id, Arc::new(opened), finished))
    }
}

/// Draws the Run panel.
pub fn ui(app: &mut LetheApp, ui: &mut egui::Ui) {
    let recipe = &app.workspace.recipe;
    ui.heading("Run");
    ui.label(format!(
        "{} forgets {} in {}, judged on {} dataset(s).",
        recipe.method.name,
        recipe.forget.classes.join(", "),
        recipe.model.path,
        recipe.eval.datasets.len() + 1
    ));
    ui.horizontal(|ui| {
        let running = app.runner.is_running();
        if ui
            .add_enabled(!running, egui::Button::new("Start run"))
            .on_hover_text("Start the method in the background (Ctrl+R).")
            .clicked()
        {
            app.start_run(ui.ctx());
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel"))
            .on_hover_text(
                "Stop the run (Escape); the model is left as it was and nothing is kept.",
            )
            .clicked()
        {
            app.runner.cancel();
        }
    });
    progress(&app.runner, ui);
    curves(&app.runner.points, ui);
}

fn progress(runner: &Runner, ui: &mut egui::Ui) {
    let elapsed = runner.elapsed();
    let Some(phase) = runner.phase() else {
        if runner.started.is_some() {
            ui.label(format!("Last run: {} step(s).", runner.points.len()));
        }
        return;
    };
    // No spinner: it would repaint continuously and slow the run on a software renderer;
    // the panel repaints with every step and a few times a second for the clock.
    ui.label(format!("{phase} · {elapsed:.0} s elapsed"));
    let step = runner.points.last().map_or(0, |p| p.step);
    if runner.max_steps > 0 {
        let per_step = runner
            .points
            .last()
            .map_or(0.0, |p| p.seconds / p.step as f64);
        let left = per_step * (runner.max_steps - step.min(runner.max_steps)) as f64;
        ui.add(
            egui::ProgressBar::new(step as f32 / runner.max_steps as f32).text(format!(
                "step {step} / {} · at most {left:.0} s left",
                runner.max_steps
            )),
        )
        .on_hover_text("The method stops early once it no longer recognises the forget images.");
    }
}

/// Loss and forget-accuracy curves of `points`.
pub fn curves(points: &[StepPoint], ui: &mut egui::Ui) {
    if points.is_empty() {
        return;
    }
    let names: Vec<String> = points[0].losses.iter().map(|(n, _)| n.clone()).collect();
    ui.label("Losses per step");
    Plot::new("losses")
        .height(180.0)
        .legend(Legend::default())
        .allow_scroll(false)
        .show(ui, |plot| {
            for (i, name) in names.iter().enumerate() {
                let series: Vec<[f64; 2]> = points
                    .iter()
                    .filter_map(|p| p.losses.get(i).map(|(_, v)| [p.step as f64, *v as f64]))
                    .collect();
                plot.line(Line::new(name.clone(), PlotPoints::from(series)));
            }
        });
    ui.label("Accuracy on the forget images (the method stops when it falls below its threshold)");
    Plot::new("forget_accuracy")
        .height(160.0)
        .legend(Legend::default())
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            for (name, pick) in [
                (
                    "forget images",
                    (|p: &StepPoint| p.forget_accuracy) as fn(&StepPoint) -> Option<f64>,
                ),
                ("retained", |p: &StepPoint| p.retain_accuracy),
            ] {
                let series: Vec<[f64; 2]> = points
                    .iter()
                    .filter_map(|p| pick(p).map(|a| [p.step as f64, a]))
                    .collect();
                if !series.is_empty() {
                    plot.line(Line::new(name, PlotPoints::from(series)));
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset;

    #[test]
    fn judging_the_stop_on_the_forget_set_saves_it_as_the_recipes_verification_set() {
        let browsed = Arc::new(dataset::open("shapes:colors?seed=3&n=12").unwrap());
        let home = tempfile::tempdir().unwrap();
        let mut workspace = Workspace::default();
        workspace.sets.forget = [0, 1, 2].into();
        workspace.verify_with_forget_images = true;
        let (sender, _receiver) = mpsc::channel();
        let job = RunJob {
            id: 1,
            before: Arc::default(),
            workspace,
            browsed: Some(browsed),
            home: home.path().to_path_buf(),
            cancel: Arc::default(),
            sender,
            ctx: egui::Context::default(),
        };
        let recipe = job.recipe().unwrap();
        assert_eq!(
            recipe.forget.images, None,
            "the method does not train on them"
        );
        let verify = dataset::open(recipe.forget.verify.as_deref().unwrap()).unwrap();
        assert_eq!(verify.items.len(), 3);
    }
}
