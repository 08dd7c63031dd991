//! The background job runner: events, cancellation, divergence and failure handling.

use std::time::Duration;

use burn::tensor::Device;
use lethe::clip::checkpoint::Checkpoint;
use lethe::clip::{Clip, host_values};
use lethe::demo::resolve_model;
use lethe::unlearn::job::{Ending, Event, Job, Method, StepReport};
use lethe::unlearn::methods::MethodError;

fn model() -> Clip {
    let checkpoint = Checkpoint::open(&resolve_model("demo:vit").unwrap()).unwrap();
    checkpoint.load(&Device::flex()).unwrap()
}

fn scale(model: &Clip) -> f32 {
    host_values(model.logit_scale.val())[0]
}

/// Adds 1 to the logit scale each step; can be told to misbehave at a given step.
struct Counter {
    steps: usize,
    max: usize,
    nan_loss_at: Option<usize>,
    nan_weights_at: Option<usize>,
    fail_at: Option<usize>,
    panic_at: Option<usize>,
    finish_at: Option<usize>,
    pause: Duration,
}

impl Counter {
    fn new(max: usize) -> Self {
        Self {
            steps: 0,
            max,
            nan_loss_at: None,
            nan_weights_at: None,
            fail_at: None,
            panic_at: None,
            finish_at: None,
            pause: Duration::ZERO,
        }
    }
}

impl Method for Counter {
    fn name(&self) -> &str {
        "counter"
    }

    fn max_steps(&self) -> usize {
        self.max
    }

    fn step(
        &mut self,
        mut model: Clip,
        original: &Clip,
    ) -> Result<(Clip, StepReport), MethodError> {
        self.steps += 1;
        std::thread::sleep(self.pause);
        if Some(self.steps) == self.fail_at {
            return Err(MethodError::Failed {
                method: "counter".into(),
                problem: "out of ideas".into(),
            });
        }
        assert_ne!(Some(self.steps), self.panic_at, "a bug in the method");
        // Like a real method: the loss is measured on the weights going in, then they change.
        let drift = scale(&model) - scale(original);
        let loss = if Some(self.steps) == self.nan_loss_at {
            f32::NAN
        } else {
            drift
        };
        let poison = Some(self.steps) == self.nan_weights_at;
        model.logit_scale = model
            .logit_scale
            .map(|t| if poison { t * f32::NAN } else { t + 1.0 });
        let report = StepReport {
            losses: vec![("drift".into(), loss)],
            forget_accuracy: Some(1.0 / self.steps as f64),
            retain_accuracy: None,
            finished: Some(self.steps) == self.finish_at,
        };
        Ok((model, report))
    }
}

fn run(method: Counter) -> (Vec<Event>, lethe::unlearn::job::Outcome) {
    let job = Job::spawn(Box::new(method), model());
    let events: Vec<Event> = job.events.iter().collect();
    (events, job.join())
}

#[test]
fn runs_to_the_end_reporting_every_step() {
    let start = scale(&model());
    let (events, outcome) = run(Counter::new(4));
    assert_eq!(outcome.ending, Ending::Finished);
    assert_eq!(outcome.steps, 4);
    assert_eq!(scale(&outcome.model), start + 4.0);
    assert_eq!(events.len(), 5);
    let Event::Step { step, report, .. } = &events[3] else {
        panic!("{:?}", events[3])
    };
    assert_eq!((*step, report.losses[0].1), (4, 3.0));
    assert_eq!(events[4], Event::Ended(Ending::Finished));
}

#[test]
fn stops_when_the_method_says_it_is_done() {
    let (_, outcome) = run(Counter {
        finish_at: Some(2),
        ..Counter::new(10)
    });
    assert_eq!((outcome.ending, outcome.steps), (Ending::Finished, 2));
}

#[test]
fn a_nan_loss_discards_that_update() {
    let start = scale(&model());
    let (events, outcome) = run(Counter {
        nan_loss_at: Some(3),
        ..Counter::new(10)
    });
    assert_eq!(outcome.ending, Ending::Diverged { step: 3 });
    assert_eq!(scale(&outcome.model), start + 2.0);
    assert_eq!(
        events.last(),
        Some(&Event::Ended(Ending::Diverged { step: 3 }))
    );
}

#[test]
fn nan_weights_roll_back_to_the_last_finite_model() {
    let start = scale(&model());
    // Step 3 reports a finite loss but writes NaN weights; step 4's loss is NaN.
    let (_, outcome) = run(Counter {
        nan_weights_at: Some(3),
        ..Counter::new(10)
    });
    assert_eq!(outcome.ending, Ending::Diverged { step: 4 });
    assert_eq!(scale(&outcome.model), start + 2.0);
}

#[test]
fn a_failing_method_keeps_the_last_good_model() {
    let start = scale(&model());
    let (_, outcome) = run(Counter {
        fail_at: Some(2),
        ..Counter::new(10)
    });
    assert_eq!(
        outcome.ending,
        Ending::Failed("method 'counter' failed: out of ideas".into())
    );
    assert_eq!(scale(&outcome.model), start + 1.0);
}

#[test]
fn cancelling_stops_between_steps() {
    let start = scale(&model());
    let job = Job::spawn(
        Box::new(Counter {
            pause: Duration::from_millis(30),
            ..Counter::new(1000)
        }),
        model(),
    );
    let first = job.events.recv().unwrap();
    assert!(matches!(first, Event::Step { step: 1, .. }), "{first:?}");
    job.cancel();
    let outcome = job.join();
    assert_eq!(outcome.ending, Ending::Cancelled);
    assert!(outcome.steps < 1000);
    assert_eq!(scale(&outcome.model), start + outcome.steps as f32);
}

#[test]
fn a_panicking_method_fails_with_its_message_and_keeps_the_last_good_model() {
    let start = scale(&model());
    let (events, outcome) = run(Counter {
        panic_at: Some(3),
        ..Counter::new(10)
    });
    let Ending::Failed(message) = &outcome.ending else {
        panic!("{:?}", outcome.ending)
    };
    assert!(message.contains("a bug in the method"), "{message}");
    assert_eq!((outcome.steps, scale(&outcome.model)), (2, start + 2.0));
    assert_eq!(events.last(), Some(&Event::Ended(outcome.ending.clone())));
}
