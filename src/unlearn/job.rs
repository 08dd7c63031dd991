//! Running an unlearning method in the background: progress through a channel, cancellation
//! at any step, and a stop on a non-finite loss that hands back the last good weights.
//!
//! The runner owns the loop, so every method gets the same guarantees (and the GUI and the
//! command line the same events) without each method re-implementing them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::methods::MethodError;
use crate::clip::Clip;
use crate::clip::checkpoint::named_tensors;
use crate::clip::weights::Format;

/// What one iteration of a method reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Named loss terms of this iteration (e.g. `("lipschitz", 0.8)`).
    pub losses: Vec<(String, f32)>,
    /// Accuracy on the forget set the method tracks, when it measured one this step.
    pub forget_accuracy: Option<f64>,
    /// Accuracy on the retain set, when measured this step.
    pub retain_accuracy: Option<f64>,
    /// The method reached its stopping criterion with this step.
    pub finished: bool,
}

/// One unlearning method, advanced one iteration at a time by [`run`].
pub trait Method: Send {
    /// Short name, as in recipes (`lip`, `emb`, ...).
    fn name(&self) -> &str;

    /// Upper bound on iterations, for progress bars.
    fn max_steps(&self) -> usize;

    /// One iteration: takes the current model and returns the updated one. `original` is the
    /// frozen model the run started from.
    fn step(&mut self, model: Clip, original: &Clip) -> Result<(Clip, StepReport), MethodError>;

    /// The model to keep when the run finishes, for a method that tracks a better one than
    /// the last (the best validation trade-off); `None` keeps the last.
    fn best(&mut self) -> Option<Clip> {
        None
    }

    /// What the run did that a reader of its report should know, in sentences (a stage it
    /// skipped and why, a setting it chose on its own); asked once, when the run ends.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// The run's edit as low-rank adapters on the original model's weights, for a method
    /// that trains adapters: the adapted model and the weight its adapters carry in the final
    /// model (a soup's `α`), so that the original plus `weight · scale · B·A` at each adapted
    /// weight is the final model. Asked once, when the run ends.
    fn adapters(&self) -> Option<(Clip, f64)> {
        None
    }
}

/// Progress of a job, in the order it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An iteration finished.
    Step {
        /// 1-based iteration number.
        step: usize,
        /// The method's upper bound on iterations.
        max_steps: usize,
        /// What the iteration reported.
        report: StepReport,
        /// Time since the job started.
        elapsed: Duration,
    },
    /// The job ended; no event follows.
    Ended(Ending),
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// The method met its stopping criterion or used up its iterations.
    Finished,
    /// Cancelled; the model is the one before the interrupted iteration.
    Cancelled,
    /// A loss became NaN or infinite at this step; the update is discarded and the model is
    /// the last one whose weights are all finite.
    Diverged {
        /// The iteration that diverged.
        step: usize,
    },
    /// The method failed with this message; the model is the last good one.
    Failed(String),
}

/// The outcome of a job: how it ended and the model to keep.
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// The last good model.
    pub model: Clip,
    /// Iterations completed.
    pub steps: usize,
    /// The method's notes on the run ([`Method::notes`]).
    pub notes: Vec<String>,
    /// The edit as adapters, when the method trained them ([`Method::adapters`]).
    pub adapters: Option<(Clip, f64)>,
}

/// A job running on its own thread.
pub struct Job {
    /// Progress events, ending with [`Event::Ended`].
    pub events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<Outcome>,
}

impl Job {
    /// Starts `method` on `model` in the background.
    pub fn spawn(method: Box<dyn Method>, model: Clip) -> Self {
        let (sender, events) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let thread = thread::spawn(move || run(method, model, &flag, &sender));
        Self {
            events,
            cancel,
            thread,
        }
    }

    /// Asks the job to stop before its next iteration.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for the job to end and returns its outcome.
    pub fn join(self) -> Outcome {
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Whether every weight of `model` is a finite number.
fn weights_are_finite(model: &Clip) -> bool {
    named_tensors(model, Format::OpenClip, None)
        .values()
        .all(|(_, values)| values.iter().all(|v| v.is_finite()))
}

/// The text of a panic payload, for [`Ending::Failed`].
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown cause");
    format!("internal error in the method: {text}")
}

/// Runs `method` on `model` until it finishes, `cancel` is set, a loss stops being finite or
/// the method fails, sending an [`Event`] after every iteration and one at the end. Runs on
/// the calling thread ([`Job::spawn`] puts it on another).
pub fn run(
    mut method: Box<dyn Method>,
    model: Clip,
    cancel: &AtomicBool,
    events: &Sender<Event>,
) -> Outcome {
    let start = Instant::now();
    let original = model.clone();
    let max_steps = method.max_steps();
    let mut model = model;
    let mut previous: Option<Clip> = None;
    let mut steps = 0;
    let ending = loop {
        if steps == max_steps {
            break Ending::Finished;
        }
        if cancel.load(Ordering::Relaxed) {
            break Ending::Cancelled;
        }
        // A bug in a method must end the job with a message, not take the app down with it.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            method.step(model.clone(), &original)
        }));
        let (next, report) = match step {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => break Ending::Failed(error.to_string()),
            Err(panic) => break Ending::Failed(panic_message(panic.as_ref())),
        };
        if report.losses.iter().any(|(_, loss)| !loss.is_finite()) {
            // The last update may itself have produced the bad weights behind this loss.
            if !weights_are_finite(&model)
                && let Some(good) = previous.take()
            {
                model = good;
            }
            break Ending::Diverged { step: steps + 1 };
        }
        previous = Some(std::mem::replace(&mut model, next));
        steps += 1;
        let finished = report.finished;
        // A closed receiver only means nobody is watching; the job still completes.
        let _ = events.send(Event::Step {
            step: steps,
            max_steps,
            report,
            elapsed: start.elapsed(),
        });
        if finished {
            break Ending::Finished;
        }
    };
    if ending == Ending::Finished
        && let Some(best) = method.best()
    {
        model = best;
    }
    let _ = events.send(Event::Ended(ending.clone()));
    let adapters = (ending == Ending::Finished)
        .then(|| method.adapters())
        .flatten();
    Outcome {
        ending,
        model,
        steps,
        notes: method.notes(),
        adapters,
    }
}
