//! The Run panel: the scenario runs on a background thread through the same workflow as
//! `lethe run`; progress, live curves and Cancel, with the UI repainting throughout.

use std::path::{Path, PathBuf};
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
use super::batch_view::BatchRecord;
use super::results::RunRecord;
use super::workspace::Workspace;
use crate::batch::run_batch;
use crate::data::dataset::Dataset;
use crate::data::subset::save_subset;
use crate::eval::audit::Verdict;
use crate::recipe::{BatchMode, Recipe, SubgroupSection};
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
    Phase(String),
    /// A batch started the run forgetting these queued concepts (and says so in words).
    Concepts(Vec<usize>, String),
    Step {
        point: StepPoint,
        max_steps: usize,
    },
    Done(Result<Outcome, String>),
}

/// What a finished job hands back.
pub enum Outcome {
    /// One scenario's run.
    Run(Box<RunRecord>),
    /// The queue's batch.
    Batch(Box<BatchRecord>),
}

/// Where one queued concept stands while the queue runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConceptState {
    /// Its run has not started.
    Waiting,
    /// Its run is under way.
    Running,
    /// Its run has ended; it is judged once the whole batch has run (a later run may bring
    /// it back).
    Ran,
    /// The batch has ended: its combined verdict (`None` without criteria).
    Judged(Option<Verdict>),
    /// The batch failed or was cancelled before it was judged; nothing was kept.
    Stopped,
}

impl ConceptState {
    /// The state in words, for the queue's status column.
    pub fn word(self) -> &'static str {
        match self {
            ConceptState::Waiting => "waiting",
            ConceptState::Running => "running",
            ConceptState::Ran => "forgotten; judged when the batch ends",
            ConceptState::Judged(Some(verdict)) => verdict.word(),
            ConceptState::Judged(None) => "done (no criteria)",
            ConceptState::Stopped => "stopped, nothing kept",
        }
    }
}

/// What the user starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The workspace's scenario.
    Scenario,
    /// The queue of concepts, as one batch.
    Queue,
}

/// What a job runs.
#[derive(Clone)]
enum JobKind {
    /// The workspace's scenario.
    Scenario,
    /// The queue, written as a batch into the new folder.
    Queue(PathBuf),
}

/// The run in progress and the curves of the latest run.
#[derive(Default)]
pub struct Runner {
    receiver: Option<Receiver<Message>>,
    cancel: Arc<AtomicBool>,
    started: Option<Instant>,
    phase: Option<String>,
    /// Which run of a batch is under way, in words.
    stage: Option<String>,
    /// Each queued concept's state, while the queue runs and after (empty for a single run).
    pub queue: Vec<ConceptState>,
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

    /// What the run is doing now (and, in a batch, for which concept).
    pub fn phase(&self) -> Option<String> {
        let phase = self.phase.as_deref()?;
        Some(match &self.stage {
            Some(stage) => format!("{stage} · {phase}"),
            None => phase.to_string(),
        })
    }

    /// Asks the run to stop; it ends after the current step and keeps nothing.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Starts the workspace's scenario or its queue. Picked images are saved under `home` for
    /// the recipe; a queue's batch is written into a new folder there.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        workspace: &Workspace,
        browsed: Option<Arc<Dataset>>,
        home: PathBuf,
        what: Start,
    ) -> Result<(), String> {
        let kind = match what {
            Start::Scenario => {
                if workspace.recipe.forget.classes.is_empty() {
                    return Err("Nothing to forget: choose a class in step 2 (Sets).".into());
                }
                if workspace.uses_forget_set()
                    && (browsed.is_none() || workspace.sets.forget.is_empty())
                {
                    return Err(
                        "The forget set's images are to be used, but the forget set is empty."
                            .into(),
                    );
                }
                JobKind::Scenario
            }
            Start::Queue => {
                workspace.batch_recipe(&workspace.recipe)?;
                let name = format!("{}-batch-{}", unix_seconds(), self.runs + 1);
                JobKind::Queue(home.join("batches").join(name))
            }
        };
        self.spawn(ctx, workspace, browsed, home, kind);
        if what == Start::Queue {
            self.queue = vec![ConceptState::Waiting; workspace.queue.len()];
        }
        Ok(())
    }

    /// Resets the progress and hands `kind` to a background thread.
    fn spawn(
        &mut self,
        ctx: &egui::Context,
        workspace: &Workspace,
        browsed: Option<Arc<Dataset>>,
        home: PathBuf,
        kind: JobKind,
    ) {
        let (sender, receiver) = mpsc::channel();
        self.receiver = Some(receiver);
        self.cancel = Arc::new(AtomicBool::new(false));
        self.started = Some(Instant::now());
        self.phase = Some("starting".into());
        self.stage = None;
        self.points.clear();
        self.max_steps = 0;
        self.queue.clear();
        self.runs += 1;
        let job = RunJob {
            id: self.runs,
            kind,
            before: Arc::clone(&self.before),
            workspace: workspace.clone(),
            browsed,
            home,
            cancel: Arc::clone(&self.cancel),
            sender,
            ctx: ctx.clone(),
        };
        thread::spawn(move || job.run());
    }

    /// Takes in the run's messages; returns its outcome once it has ended.
    pub fn poll(&mut self, ctx: &egui::Context) -> Option<Result<Outcome, String>> {
        let receiver = self.receiver.as_ref()?;
        ctx.request_repaint_after(Duration::from_millis(200));
        loop {
            match receiver.try_recv() {
                Ok(Message::Phase(phase)) => self.phase = Some(phase),
                Ok(Message::Concepts(running, label)) => {
                    self.stage = Some(label);
                    for (i, state) in self.queue.iter_mut().enumerate() {
                        if running.contains(&i) {
                            *state = ConceptState::Running;
                        } else if *state == ConceptState::Running {
                            *state = ConceptState::Ran;
                        }
                    }
                    // Each run of a batch draws its own curves.
                    self.points.clear();
                    self.max_steps = 0;
                }
                Ok(Message::Step { point, max_steps }) => {
                    self.max_steps = max_steps;
                    self.points.push(point);
                }
                Ok(Message::Done(result)) => {
                    self.finish(result.as_ref().ok());
                    return Some(result.map(|outcome| match outcome {
                        Outcome::Run(mut record) => {
                            record.curve = self.points.clone();
                            Outcome::Run(record)
                        }
                        batch => batch,
                    }));
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    self.finish(None);
                    return Some(Err("the run stopped unexpectedly".into()));
                }
            }
        }
    }

    /// Ends the job; a finished batch judges every queued concept, anything else leaves
    /// the concepts that had not been judged stopped.
    fn finish(&mut self, outcome: Option<&Outcome>) {
        self.receiver = None;
        self.phase = None;
        self.stage = None;
        match outcome {
            Some(Outcome::Batch(record)) => {
                self.queue = record
                    .result
                    .concepts
                    .iter()
                    .map(|c| ConceptState::Judged(c.verdict))
                    .collect();
            }
            _ => self
                .queue
                .iter_mut()
                .for_each(|s| *s = ConceptState::Stopped),
        }
    }

    /// Seconds since the run started.
    fn elapsed(&self) -> f64 {
        self.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
    }
}

/// Seconds since 1970, to name batch folders in the order they ran.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the background thread needs.
struct RunJob {
    id: usize,
    kind: JobKind,
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
        let result = match &self.kind {
            JobKind::Scenario => self.work().map(|r| Outcome::Run(Box::new(r))),
            JobKind::Queue(out) => self.work_queue(out).map(|r| Outcome::Batch(Box::new(r))),
        };
        self.send(Message::Done(result.map_err(|e| format!("{e:#}"))));
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            bail!(RunStopped::Cancelled { steps: 0 });
        }
        Ok(())
    }

    /// The recipe with the picked sets saved as manifests: forget images (when asked for, to
    /// train on or to judge the stop on; a queued concept carries its own), the retain set as
    /// the retain images of a method's retain term, and the retain set and evaluation split as
    /// extra evaluation datasets. A subgroup's measured pictures become the `[subgroup]`
    /// section, its verification pictures the `verify` set, and its evaluation split the
    /// soup's calibration pictures.
    fn recipe(&self) -> Result<Recipe> {
        let mut recipe = self.workspace.recipe.clone();
        let Some(browsed) = &self.browsed else {
            return Ok(recipe);
        };
        let sets = &self.workspace.sets;
        let folder = self.home.join("sets");
        if matches!(self.kind, JobKind::Scenario) {
            let forget: Vec<usize> = sets.forget.iter().copied().collect();
            if self.workspace.use_forget_images {
                recipe.forget.images = Some(save_subset(browsed, &forget, &folder.join("forget"))?);
            }
            if self.workspace.verify_with_forget_images {
                recipe.forget.verify = Some(save_subset(browsed, &forget, &folder.join("verify"))?);
            }
        }
        for (name, set) in [("retain", &sets.retain), ("eval", &sets.eval)] {
            if !set.is_empty() {
                let items: Vec<usize> = set.iter().copied().collect();
                let spec = save_subset(browsed, &items, &folder.join(name))?;
                if name == "retain" {
                    recipe.forget.retain = Some(spec.clone());
                } else if sets.subgroup.is_some() {
                    recipe.forget.calibration = Some(spec.clone());
                }
                recipe.eval.datasets.push(spec);
            }
        }
        if let Some(subgroup) = &sets.subgroup {
            let save = |items: &std::collections::BTreeSet<usize>, name: &str| {
                let items: Vec<usize> = items.iter().copied().collect();
                save_subset(browsed, &items, &folder.join(name))
            };
            recipe.forget.verify = Some(save(&subgroup.verify, "subgroup-verify")?);
            recipe.subgroup = Some(SubgroupSection {
                name: subgroup.name.clone(),
                target: save(&subgroup.target, "subgroup-target")?,
                siblings: save(&subgroup.siblings, "subgroup-siblings")?,
                also_forgotten: Vec::new(),
            });
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
        self.send(Message::Phase("measuring the model before".into()));
        let before = measure_before(opened);
        if let Ok(mut slot) = self.before.lock() {
            *slot = Some((key, before.clone()));
        }
        before
    }

    /// Passes a method's event on to the panel: a step for the curves, or the end of
    /// unlearning.
    fn forward(&self, event: &Event) {
        match event {
            Event::Step {
                step,
                max_steps,
                report,
                elapsed,
            } => {
                self.send(Message::Phase("unlearning".into()));
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
            Event::Ended(_) => self.send(Message::Phase("measuring the model after".into())),
        }
    }

    fn work(&self) -> Result<RunRecord> {
        self.send(Message::Phase("saving the picked images".into()));
        let recipe = self.recipe()?;
        let text = recipe.to_toml();
        self.check_cancel()?;
        self.send(Message::Phase("opening the model and data".into()));
        let opened = Opened::open(recipe, text)?;
        self.check_cancel()?;
        let before = self.measure_before(&opened);
        self.check_cancel()?;
        self.send(Message::Phase("making forget images".into()));
        let finished = execute_from(&opened, &before, &self.cancel, |e| self.forward(e))?;
        Ok(RunRecord::new(self.id, Arc::new(opened), finished))
    }

    /// Runs the queue as a batch recipe into `out`, as `lethe run` would.
    fn work_queue(&self, out: &Path) -> Result<BatchRecord> {
        self.send(Message::Phase("saving the picked images".into()));
        let shared = self.recipe()?;
        let recipe = self
            .workspace
            .batch_recipe(&shared)
            .map_err(anyhow::Error::msg)?;
        let text = recipe.to_toml();
        self.check_cancel()?;
        let result = run_batch(
            &recipe,
            &text,
            out,
            &self.cancel,
            |concepts, label| {
                self.send(Message::Concepts(concepts.to_vec(), label.to_string()));
                self.send(Message::Phase("opening the model and measuring it".into()));
            },
            |e| self.forward(e),
        )?;
        Ok(BatchRecord::new(self.id, recipe, out.to_path_buf(), result))
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
            app.start_run(ui.ctx(), Start::Scenario);
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
    queue(app, ui);
}

/// The queue: concepts forgotten in one batch, as a recipe's `[[scenario]]` entries are, each
/// with where it stands.
fn queue(app: &mut LetheApp, ui: &mut egui::Ui) {
    ui.separator();
    ui.heading("Queue");
    ui.label(
        "Forget several concepts in one batch. The scenario above supplies what they share: \
         model, method, settings, retain and evaluation sets.",
    );
    let running = app.runner.is_running();
    let workspace = &mut app.workspace;
    let mut add = false;
    let mut start = false;
    let mut saved = None;
    ui.horizontal(|ui| {
        let classes = workspace.recipe.forget.classes.join(" + ");
        add = ui
            .add_enabled(
                !running && !classes.is_empty(),
                egui::Button::new("Add to queue"),
            )
            .on_hover_text(format!(
                "Queue the scenario's classes ({classes}) as one concept, with the picked forget pictures if the scenario uses them."
            ))
            .clicked();
        ui.separator();
        ui.label("Run them");
        ui.add_enabled_ui(!running, |ui| {
            ui.radio_value(&mut workspace.queue_mode, BatchMode::Sequential, "one after another")
                .on_hover_text("Each concept's run starts from the model the previous one left; every concept is measured again after every run, so you see whether forgetting one brings another back.");
            ui.radio_value(&mut workspace.queue_mode, BatchMode::Joint, "all at once")
                .on_hover_text("One run forgets every queued class (they must share the zero-shot head's dataset).");
        });
        start = ui
            .add_enabled(
                !running && !workspace.queue.is_empty(),
                egui::Button::new("Run queue"),
            )
            .on_hover_text("Run the queue in the background (Ctrl+Shift+R); the batch is written to a new folder in the workspace, as `lethe run` writes a batch recipe.")
            .clicked();
        if ui
            .add_enabled(!workspace.queue.is_empty(), egui::Button::new("Save queue as recipe…"))
            .on_hover_text("Save the queue as a batch recipe, to run with `lethe run` on another machine.")
            .clicked()
            && let Some(path) = rfd::FileDialog::new()
                .set_file_name("batch.toml")
                .save_file()
        {
            saved = Some(
                workspace
                    .batch_recipe(&workspace.recipe)
                    .and_then(|recipe| {
                        crate::atomic::write_file(&path, recipe.to_toml().as_bytes())
                            .map_err(|e| format!("{e:#}"))
                    })
                    .map(|()| format!("Saved {}", path.display())),
            );
        }
    });
    if workspace.queue.is_empty() {
        ui.weak("The queue is empty.");
    }
    let states = (app.runner.queue.len() == workspace.queue.len()).then_some(&app.runner.queue);
    let step = app
        .runner
        .points
        .last()
        .map(|p| (p.step, app.runner.max_steps));
    let mut remove = None;
    egui::Grid::new("queue").striped(true).show(ui, |ui| {
        if !workspace.queue.is_empty() {
            for heading in ["concept", "zero-shot head", "pictures", "status", ""] {
                ui.strong(heading);
            }
            ui.end_row();
        }
        for (i, concept) in workspace.queue.iter().enumerate() {
            ui.label(concept.title());
            ui.label(
                concept
                    .dataset
                    .as_deref()
                    .unwrap_or(&workspace.recipe.forget.dataset),
            );
            ui.label(match (&concept.images, &concept.verify) {
                (Some(_), _) => "picked, trained on",
                (_, Some(_)) => "picked, to verify",
                _ => "–",
            });
            let state = states.map_or(ConceptState::Waiting, |s| s[i]);
            let text = match (state, step) {
                (ConceptState::Running, Some((step, max))) if max > 0 => {
                    format!("running · step {step} / {max}")
                }
                _ => state.word().to_string(),
            };
            match state {
                ConceptState::Judged(Some(verdict)) => {
                    ui.colored_label(super::results::verdict_colour(verdict), text);
                }
                _ => {
                    ui.label(text);
                }
            }
            if ui
                .add_enabled(!running, egui::Button::new("Remove").small())
                .on_hover_text(format!("Take {} out of the queue.", concept.title()))
                .clicked()
            {
                remove = Some(i);
            }
            ui.end_row();
        }
    });
    if let Some(i) = remove {
        app.workspace.queue.remove(i);
        app.runner.queue.clear();
    }
    match saved {
        Some(Ok(message)) => app.notify(message, false),
        Some(Err(error)) => app.notify(error, true),
        None => {}
    }
    if add {
        app.queue_scenario();
    }
    if start {
        app.start_run(ui.ctx(), Start::Queue);
    }
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
            kind: JobKind::Scenario,
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
