//! Work the app hands to a background thread, polled once per frame so the UI never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;

use eframe::egui::Context;

/// The result of one piece of background work, once it is there.
pub struct Task<T> {
    receiver: Receiver<T>,
    /// What is being done, for the status bar.
    pub label: String,
}

impl<T: Send + 'static> Task<T> {
    /// Starts `work` on its own thread; `ctx` is asked to repaint when it is done, so the UI
    /// wakes up to poll it.
    pub fn spawn(
        label: impl Into<String>,
        ctx: &Context,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let ctx = ctx.clone();
        thread::spawn(move || {
            let _ = sender.send(work());
            ctx.request_repaint();
        });
        Self {
            receiver,
            label: label.into(),
        }
    }
}

impl<T> Task<T> {
    /// The result if the work has finished; an error message if its thread died.
    pub fn poll(&self) -> Option<Result<T, String>> {
        match self.receiver.try_recv() {
            Ok(value) => Some(Ok(value)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                Some(Err(format!("{} stopped unexpectedly", self.label)))
            }
        }
    }
}

/// Takes the finished result out of an optional task slot, leaving the slot empty.
pub fn take_finished<T>(slot: &mut Option<Task<T>>) -> Option<Result<T, String>> {
    let result = slot.as_ref()?.poll()?;
    *slot = None;
    Some(result)
}

/// Raises a flag that background work checks to give up early, when its owner drops it (the
/// user moved on: another dataset, another model, another query).
pub struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    /// The guard, and the flag for the work to check.
    pub fn new() -> (Self, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (Self(Arc::clone(&flag)), flag)
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
