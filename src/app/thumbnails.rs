//! Thumbnails for the image grids: decoded and shrunk by a few worker threads, uploaded as
//! textures on the UI thread and kept in a bounded least-recently-used cache, so that scrolling
//! through 100,000 images neither stalls a frame nor fills memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use eframe::egui::{ColorImage, Context, TextureHandle, TextureOptions};
use image::{DynamicImage, RgbImage};

use crate::data::dataset::Dataset;

/// Longest side of a grid thumbnail, in pixels: enough for the largest tile without blurring.
pub const THUMBNAIL_SIDE: u32 = 96;

/// Requests kept waiting for a worker. When scrolling fast, older requests (for tiles long gone
/// from the screen) are dropped so the workers always decode what is visible now.
const MAX_QUEUED: usize = 1024;

/// A thumbnail's identity: interned dataset name and item index.
type Key = (u32, usize);

/// One decode request.
struct Job {
    key: Key,
    dataset: Arc<Dataset>,
    index: usize,
    ctx: Context,
}

/// A worker's answer: the thumbnail, or `None` when the image could not be read.
type Decoded = (Key, Option<ColorImage>);

/// Work waiting for the workers; `closed` tells them to stop.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// The queue and the signal that wakes idle workers, shared with every worker.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// An uploaded thumbnail and the pass that last drew it.
struct Cached {
    texture: TextureHandle,
    last_used: u64,
}

/// The thumbnail cache shared by every grid of the app: textures by (dataset, item), decoded in
/// the background, evicted least recently used first.
pub struct Thumbnails {
    shared: Arc<Shared>,
    results: Receiver<Decoded>,
    names: HashMap<String, u32>,
    textures: HashMap<Key, Cached>,
    failed: HashSet<Key>,
    requested: HashSet<Key>,
    capacity: usize,
}

impl Thumbnails {
    /// A cache of at most `capacity` textures (keep it above the number of tiles one screen
    /// shows) fed by `workers` decoding threads (at least one).
    pub fn new(workers: usize, capacity: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let (sender, results) = mpsc::channel();
        for n in 0..workers.max(1) {
            let (shared, sender) = (Arc::clone(&shared), sender.clone());
            let spawned = thread::Builder::new()
                .name(format!("lethe-thumbnails-{n}"))
                .spawn(move || work(&shared, &sender));
            if let Err(error) = spawned {
                tracing::warn!("could not start a thumbnail worker: {error}");
            }
        }
        Self {
            shared,
            results,
            names: HashMap::new(),
            textures: HashMap::new(),
            failed: HashSet::new(),
            requested: HashSet::new(),
            capacity,
        }
    }

    /// The thumbnail of item `index`, if it is decoded; otherwise asks a worker for it (once)
    /// and returns `None`, and the UI is repainted when it is ready. Unreadable images give
    /// `None` for good (see [`Self::failed`]).
    pub fn get(
        &mut self,
        ctx: &Context,
        dataset: &Arc<Dataset>,
        index: usize,
    ) -> Option<TextureHandle> {
        self.poll(ctx);
        let key = (self.intern(&dataset.name), index);
        if let Some(cached) = self.textures.get_mut(&key) {
            cached.last_used = ctx.cumulative_pass_nr();
            return Some(cached.texture.clone());
        }
        if !self.failed.contains(&key) && self.requested.insert(key) {
            self.enqueue(Job {
                key,
                dataset: Arc::clone(dataset),
                index,
                ctx: ctx.clone(),
            });
        }
        None
    }

    /// Uploads the thumbnails the workers have finished; [`Self::get`] does this too, so call it
    /// only to keep [`Self::pending`] current while no grid is shown.
    pub fn poll(&mut self, ctx: &Context) {
        let pass = ctx.cumulative_pass_nr();
        let mut uploaded = false;
        while let Ok((key, image)) = self.results.try_recv() {
            self.requested.remove(&key);
            match image {
                Some(image) => {
                    let name = format!("thumbnail {}:{}", key.0, key.1);
                    let texture = ctx.load_texture(name, image, TextureOptions::LINEAR);
                    let cached = Cached {
                        texture,
                        last_used: pass,
                    };
                    self.textures.insert(key, cached);
                    uploaded = true;
                }
                None => {
                    self.failed.insert(key);
                }
            }
        }
        if uploaded {
            self.evict(pass);
        }
    }

    /// Whether item `index` of `dataset` turned out unreadable (the grid draws a placeholder).
    pub fn failed(&self, dataset: &Dataset, index: usize) -> bool {
        self.names
            .get(&dataset.name)
            .is_some_and(|&name| self.failed.contains(&(name, index)))
    }

    /// Thumbnails queued or being decoded, for the status bar.
    pub fn pending(&self) -> usize {
        self.requested.len()
    }

    /// A small number standing for a dataset name, so that lookups allocate nothing.
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.names.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.insert(name.to_string(), id);
        id
    }

    /// Hands a job to the workers, dropping the oldest waiting ones beyond [`MAX_QUEUED`].
    fn enqueue(&mut self, job: Job) {
        let mut queue = lock(&self.shared.queue);
        queue.jobs.push_back(job);
        for dropped in drop_oldest(&mut queue.jobs, MAX_QUEUED) {
            self.requested.remove(&dropped.key);
        }
        drop(queue);
        self.shared.ready.notify_one();
    }

    /// Frees the least recently drawn textures once there are more than `capacity`, down to
    /// 90 % of it so that eviction does not run on every upload; textures drawn in the current
    /// pass are kept even if that leaves the cache over capacity.
    fn evict(&mut self, pass: u64) {
        if self.textures.len() <= self.capacity {
            return;
        }
        let excess = self.textures.len() - self.capacity * 9 / 10;
        let mut ages: Vec<(u64, Key)> = self
            .textures
            .iter()
            .filter(|(_, cached)| cached.last_used < pass)
            .map(|(key, cached)| (cached.last_used, *key))
            .collect();
        ages.sort_unstable();
        for (_, key) in ages.into_iter().take(excess) {
            self.textures.remove(&key);
        }
    }
}

impl Drop for Thumbnails {
    /// Tells the workers to stop; they finish the image in hand and exit.
    fn drop(&mut self) {
        let mut queue = lock(&self.shared.queue);
        queue.closed = true;
        queue.jobs.clear();
        drop(queue);
        self.shared.ready.notify_all();
    }
}

/// Removes and returns the oldest entries beyond `max`.
fn drop_oldest<T>(jobs: &mut VecDeque<T>, max: usize) -> Vec<T> {
    let excess = jobs.len().saturating_sub(max);
    jobs.drain(..excess).collect()
}

/// Locks the queue; a worker that panicked while holding it cannot leave it inconsistent, so a
/// poisoned lock is used as is.
fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A worker: decodes jobs, newest first, until the cache is dropped.
fn work(shared: &Shared, results: &Sender<Decoded>) {
    while let Some(job) = next_job(shared) {
        let image = decode_image(&job.dataset, job.index, THUMBNAIL_SIDE).ok();
        if results.send((job.key, image)).is_err() {
            return;
        }
        job.ctx.request_repaint();
    }
}

/// Waits for the newest job; `None` once the cache is gone.
fn next_job(shared: &Shared) -> Option<Job> {
    let mut queue = lock(&shared.queue);
    loop {
        if queue.closed {
            return None;
        }
        if let Some(job) = queue.jobs.pop_back() {
            return Some(job);
        }
        queue = shared
            .ready
            .wait(queue)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Decodes item `index` of `dataset`, shrunk (never enlarged) to at most `side` pixels, ready
/// to upload; the error says why it could not be read. Runs off the UI thread: decoding a large
/// photograph takes far longer than a frame.
pub fn decode_image(dataset: &Dataset, index: usize, side: u32) -> Result<ColorImage, String> {
    Ok(color_image(&shrink(read_image(dataset, index)?, side)))
}

/// Decodes item `index` of `dataset` at full size; the error says why it could not be read.
/// Off the UI thread only.
pub fn read_image(dataset: &Dataset, index: usize) -> Result<DynamicImage, String> {
    let item = dataset
        .items
        .get(index)
        .ok_or_else(|| format!("{}: there is no image {index}", dataset.name))?;
    // A malformed file must not take a worker down with it.
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| item.source.image()))
        .map_err(|_| format!("{}: the decoder failed", item.source.describe()))?;
    decoded.map_err(|error| error.to_string())
}

/// Scales an image down to fit `side` with a fast filter, leaving smaller images alone.
fn shrink(image: DynamicImage, side: u32) -> DynamicImage {
    if image.width() <= side && image.height() <= side {
        image
    } else {
        image.thumbnail(side, side)
    }
}

/// The image as egui pixels.
fn color_image(image: &DynamicImage) -> ColorImage {
    let rgba = image.to_rgba8();
    let size = [rgba.width() as usize, rgba.height() as usize];
    ColorImage::from_rgba_unmultiplied(size, rgba.as_raw())
}

/// Uploads an RGB image as a texture, for pictures made in memory (synthetic forget images).
pub fn texture_from_rgb(ctx: &Context, name: &str, image: &RgbImage) -> TextureHandle {
    let size = [image.width() as usize, image.height() as usize];
    let pixels = ColorImage::from_rgb(size, image.as_raw());
    ctx.load_texture(name, pixels, TextureOptions::LINEAR)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::data::dataset::{self, ImageSource, Item};

    /// Calls `get` for every item until nothing is pending (or ten seconds pass).
    fn fetch_all(thumbs: &mut Thumbnails, ctx: &Context, data: &Arc<Dataset>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for index in 0..data.items.len() {
                thumbs.get(ctx, data, index);
            }
            if thumbs.pending() == 0 || Instant::now() > deadline {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn thumbnails_are_decoded_in_the_background_and_cached() {
        let ctx = Context::default();
        let data = Arc::new(dataset::open("shapes:colors?seed=1&n=6").unwrap());
        let mut thumbs = Thumbnails::new(2, 100);
        assert!(thumbs.get(&ctx, &data, 0).is_none(), "nothing decoded yet");
        fetch_all(&mut thumbs, &ctx, &data);
        assert_eq!(thumbs.pending(), 0);
        for index in 0..6 {
            let texture = thumbs.get(&ctx, &data, index).expect("decoded");
            let [w, h] = texture.size();
            assert!(w <= THUMBNAIL_SIDE as usize && h <= THUMBNAIL_SIDE as usize);
        }
        assert!(!thumbs.failed(&data, 0));
    }

    #[test]
    fn unreadable_images_fail_once_and_are_not_retried() {
        let ctx = Context::default();
        let data = Arc::new(Dataset {
            name: "broken".into(),
            classes: vec!["a".into()],
            templates: vec!["{}".into()],
            items: vec![Item {
                source: ImageSource::File(PathBuf::from("/no/such/image.png")),
                label: 0,
                caption: None,
            }],
        });
        let mut thumbs = Thumbnails::new(1, 10);
        fetch_all(&mut thumbs, &ctx, &data);
        assert!(thumbs.failed(&data, 0));
        assert!(thumbs.get(&ctx, &data, 0).is_none());
        assert_eq!(thumbs.pending(), 0, "a failed image is not queued again");
    }

    #[test]
    fn least_recently_drawn_textures_are_evicted() {
        let ctx = Context::default();
        let data = Arc::new(dataset::open("shapes:colors?seed=1&n=4").unwrap());
        let mut thumbs = Thumbnails::new(2, 2);
        // Each pass draws one item, so the earlier ones become the least recently used.
        for index in 0..4 {
            let mut output = ctx.run_ui(eframe::egui::RawInput::default(), |_| {});
            output.textures_delta.clear();
            let deadline = Instant::now() + Duration::from_secs(10);
            while thumbs.get(&ctx, &data, index).is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(thumbs.textures.len() <= 2);
        assert!(thumbs.textures.contains_key(&(0, 3)));
    }

    #[test]
    fn only_the_newest_requests_wait() {
        let mut jobs: VecDeque<usize> = (0..10).collect();
        assert_eq!(drop_oldest(&mut jobs, 4), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(jobs, VecDeque::from(vec![6, 7, 8, 9]));
        assert!(drop_oldest(&mut jobs, 4).is_empty());
    }

    #[test]
    fn rgb_images_become_textures_of_the_same_size() {
        let ctx = Context::default();
        let texture = texture_from_rgb(&ctx, "test", &RgbImage::new(5, 3));
        assert_eq!(texture.size(), [5, 3]);
    }
}
