//! Every bound Lethe puts on what it is given, in one place: the range of each method setting,
//! the largest dataset, batch, picture, grid and model it will try, and the checks that apply
//! them. Values outside are refused before any work starts, with a message naming the key and
//! the allowed range: a size of 10⁹ would otherwise abort on allocation, a NaN learning rate
//! would write a checkpoint of NaNs, and `perturbations = 0` would reach a tensor reshape.

use std::fmt;

/// Scenes a `shapes:` dataset spec may ask for (each costs about 100 bytes before rendering).
pub const MAX_SHAPES_ITEMS: u64 = 1_000_000;
/// Pictures per batch on the command line (`bench --batch`).
pub const MAX_BATCH: usize = 4096;
/// [`MAX_BATCH`] as a command-line bound.
pub const MAX_BATCH_ARG: u64 = MAX_BATCH as u64;
/// Timed repetitions of a benchmark.
pub const MAX_ITERS: u64 = 100_000;
/// Width and height a picture may declare in its header before it is decoded (a
/// decompression bomb declares far more than it stores).
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Bytes a decoded picture may allocate.
pub const MAX_IMAGE_BYTES: u64 = 512 * 1024 * 1024;
/// Side of one contact-sheet tile, in pixels.
pub const MAX_TILE: u64 = 1024;
/// Columns of a contact sheet.
pub const MAX_COLUMNS: u64 = 256;
/// A model's width (hidden size), layer count, image size and vocabulary, as a config may
/// state them: far above any CLIP, far below what would exhaust memory before a tensor exists.
pub const MAX_WIDTH: usize = 16_384;
/// See [`MAX_WIDTH`].
pub const MAX_LAYERS: usize = 256;
/// See [`MAX_WIDTH`].
pub const MAX_IMAGE_SIZE: usize = 4096;
/// See [`MAX_WIDTH`].
pub const MAX_VOCAB: usize = 1_048_576;
/// See [`MAX_WIDTH`].
pub const MAX_CONTEXT: usize = 4096;

/// What values a numeric setting accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// A whole number from `min` to `max`.
    Int {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A finite number from `min` (excluded when `open`) to `max` (infinite: no upper bound).
    Real {
        /// Smallest allowed (or bound from below, when `open`).
        min: f64,
        /// Whether `min` itself is refused.
        open: bool,
        /// Largest allowed.
        max: f64,
    },
    /// Two whole numbers, first ≤ second, each within the range.
    IntPair {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// Two finite numbers, first ≤ second, each within the range.
    RealPair {
        /// Smallest allowed.
        min: f64,
        /// Largest allowed.
        max: f64,
    },
}

const fn int(min: i64, max: i64) -> Bound {
    Bound::Int { min, max }
}

const fn at_least(min: f64, max: f64) -> Bound {
    Bound::Real {
        min,
        open: false,
        max,
    }
}

const fn above(min: f64, max: f64) -> Bound {
    Bound::Real {
        min,
        open: true,
        max,
    }
}

const STEPS: i64 = 1_000_000;
const WEIGHT: f64 = 1e6;

/// The range of every numeric method setting, by its key (nested keys dotted). A key means
/// the same in every method that has it; a test checks every registered method's numeric
/// settings are listed here and that their defaults lie inside.
pub const SETTINGS: &[(&str, Bound)] = &[
    // No upper bound: a finite rate too large for the model diverges, and the run stops
    // on the first non-finite loss keeping nothing.
    ("learning_rate", above(0.0, f64::INFINITY)),
    ("weight_decay", at_least(0.0, 10.0)),
    ("batch", int(1, MAX_BATCH as i64)),
    ("retain_batch", int(1, MAX_BATCH as i64)),
    ("perturbations", int(1, 1024)),
    ("max_steps", int(1, STEPS)),
    ("escalation_steps", int(0, STEPS)),
    ("stop_accuracy", at_least(0.0, 1.0)),
    ("retain_weight", at_least(0.0, WEIGHT)),
    (
        "sigma",
        Bound::RealPair {
            min: 0.0,
            max: 100.0,
        },
    ),
    (
        "vision_layers",
        Bound::IntPair {
            min: 0,
            max: 100_000,
        },
    ),
    (
        "text_layers",
        Bound::IntPair {
            min: 0,
            max: 100_000,
        },
    ),
    ("alpha", at_least(0.0, WEIGHT)),
    ("epochs", int(1, 100_000)),
    ("forget_weight", at_least(0.0, WEIGHT)),
    ("consistency_weight", at_least(0.0, WEIGHT)),
    ("saliency", above(0.0, 1.0)),
    ("searches", int(1, 1000)),
    ("min_step", above(0.0, 1e3)),
    ("max_step", above(0.0, 1e3)),
    ("impair_steps", int(0, STEPS)),
    ("repair_steps", int(0, STEPS)),
    ("noise_steps", int(0, STEPS)),
    ("noise_step_size", above(0.0, 1e3)),
    ("noise_weight", at_least(0.0, WEIGHT)),
    ("layers", int(1, 100_000)),
    ("fisher_images", int(1, 100_000)),
    ("rank", int(1, 4096)),
    ("forget_steps", int(1, STEPS)),
    ("margin", at_least(0.0, 2.0)),
    ("alignment_steps", int(0, STEPS)),
    ("alignment_step_size", above(0.0, 1e3)),
    ("remind_steps", int(0, STEPS)),
    ("remind_learning_rate", above(0.0, f64::INFINITY)),
    ("remind_forget_weight", at_least(0.0, WEIGHT)),
    ("keep_weight", at_least(0.0, WEIGHT)),
    ("ema_decay", at_least(0.0, 1.0)),
    ("soup_forget_at_most", at_least(0.0, 1.0)),
    ("calibration_share", at_least(0.0, 0.9)),
    ("synthetic.count", int(1, 100_000)),
    ("synthetic.max_steps", int(0, STEPS)),
    ("synthetic.retain_per_class", int(0, 10_000)),
    ("synthetic.step_size", above(0.0, 1e3)),
    ("synthetic.threshold", at_least(0.0, 1.0)),
];

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bound::Int { min, max } => write!(f, "a whole number from {min} to {max}"),
            Bound::Real { min, open, max } if max.is_infinite() => {
                let from = if open { "above" } else { "from" };
                write!(f, "a finite number {from} {min}")
            }
            Bound::Real {
                min,
                open: false,
                max,
            } => write!(f, "a number from {min} to {max}"),
            Bound::Real {
                min,
                open: true,
                max,
            } => write!(f, "a number above {min} and at most {max}"),
            Bound::IntPair { min, max } => write!(
                f,
                "two whole numbers [first, last], first ≤ last, from {min} to {max}"
            ),
            Bound::RealPair { min, max } => write!(
                f,
                "two numbers [first, last], first ≤ last, from {min} to {max}"
            ),
        }
    }
}

impl Bound {
    /// Whether `value` is allowed.
    pub fn admits(&self, value: &toml::Value) -> bool {
        let real = |v: &toml::Value| match v {
            toml::Value::Float(x) => Some(*x),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        let pair = |v: &toml::Value| match v.as_array().map(Vec::as_slice) {
            Some([a, b]) => Some((a.clone(), b.clone())),
            _ => None,
        };
        match *self {
            Bound::Int { min, max } => value.as_integer().is_some_and(|i| (min..=max).contains(&i)),
            Bound::Real { min, open, max } => real(value).is_some_and(|x| {
                x.is_finite() && x <= max && if open { x > min } else { x >= min }
            }),
            Bound::IntPair { min, max } => pair(value).is_some_and(|(a, b)| {
                let inside = Bound::Int { min, max };
                inside.admits(&a) && inside.admits(&b) && a.as_integer() <= b.as_integer()
            }),
            Bound::RealPair { min, max } => pair(value).is_some_and(|(a, b)| {
                let inside = at_least(min, max);
                inside.admits(&a) && inside.admits(&b) && real(&a) <= real(&b)
            }),
        }
    }
}

/// The bound of the setting at dotted path `key`, if it is a numeric one.
pub fn setting_bound(key: &str) -> Option<Bound> {
    SETTINGS.iter().find(|(k, _)| *k == key).map(|(_, b)| *b)
}

/// Checks every setting in `settings` against its bound, and every number anywhere for
/// finiteness; the error names the first key at fault and what it allows.
pub fn check_settings(settings: &toml::Table) -> Result<(), String> {
    fn walk(table: &toml::Table, prefix: &str) -> Result<(), String> {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            if let toml::Value::Table(inner) = value {
                walk(inner, &format!("{path}."))?;
                continue;
            }
            if let Some(bound) = setting_bound(&path) {
                if !bound.admits(value) {
                    return Err(format!("{path} must be {bound}, got {value}"));
                }
            } else if has_non_finite(value) {
                return Err(format!("{path} must be a finite number, got {value}"));
            }
        }
        Ok(())
    }
    walk(settings, "")
}

fn has_non_finite(value: &toml::Value) -> bool {
    match value {
        toml::Value::Float(x) => !x.is_finite(),
        toml::Value::Array(items) => items.iter().any(has_non_finite),
        toml::Value::Table(table) => table.values().any(has_non_finite),
        _ => false,
    }
}

/// Refuses a picture whose header declares more than [`MAX_IMAGE_SIDE`] on a side or more than
/// [`MAX_IMAGE_BYTES`] once decoded, before it is decoded.
pub fn check_picture_size(width: u32, height: u32) -> Result<(), String> {
    let bytes = width as u64 * height as u64 * 4;
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || bytes > MAX_IMAGE_BYTES {
        return Err(format!(
            "a picture of {width}×{height} pixels is larger than Lethe reads (at most {MAX_IMAGE_SIDE} on a side and {} megapixels)",
            MAX_IMAGE_BYTES / 4 / 1_000_000
        ));
    }
    Ok(())
}

/// Refuses anything but a regular file (or a link to one) before it is opened: reading a FIFO
/// named like a picture would wait forever, and a device would never end.
pub fn check_regular_file(path: &std::path::Path) -> Result<(), String> {
    regular(path).map_err(|e| e.to_string())
}

fn regular(path: &std::path::Path) -> std::io::Result<()> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a folder, pipe or device cannot be read as one)",
        ));
    }
    Ok(())
}

/// `std::fs::read`, for regular files only (see [`check_regular_file`]).
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    regular(path)?;
    std::fs::read(path)
}

/// `std::fs::read_to_string`, for regular files only (see [`check_regular_file`]).
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    regular(path)?;
    std::fs::read_to_string(path)
}

/// Bytes of memory the system can still give (Linux's `MemAvailable`); `None` where unknown.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A command-line count from 1 to `MAX`, as clap's `value_parser` (clap names the argument).
pub fn count_arg<T: TryFrom<u64>, const MAX: u64>(text: &str) -> Result<T, String> {
    let problem = || format!("must be a whole number from 1 to {MAX}");
    let n: u64 = text.trim().parse().map_err(|_| problem())?;
    if n == 0 || n > MAX {
        return Err(problem());
    }
    T::try_from(n).map_err(|_| problem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numeric_setting_of_every_method_has_a_range_its_default_meets() {
        fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
            for (key, value) in table {
                match value {
                    toml::Value::Table(inner) => leaves(inner, &format!("{prefix}{key}."), out),
                    _ => out.push((format!("{prefix}{key}"), value.clone())),
                }
            }
        }
        for method in crate::unlearn::methods::REGISTRY {
            let mut all = Vec::new();
            leaves(&method.defaults(), "", &mut all);
            for (key, value) in all {
                if matches!(value, toml::Value::Boolean(_) | toml::Value::String(_)) {
                    continue;
                }
                let bound = setting_bound(&key)
                    .unwrap_or_else(|| panic!("{}: {key} has no range", method.name()));
                assert!(
                    bound.admits(&value),
                    "{}: default {key} = {value}",
                    method.name()
                );
            }
        }
    }

    #[test]
    fn nonsense_is_refused_by_key_with_the_allowed_range() {
        for (text, key, allowed) in [
            ("learning_rate = nan", "learning_rate", "above 0"),
            (
                "learning_rate = inf",
                "learning_rate",
                "finite number above 0",
            ),
            ("learning_rate = 0.0", "learning_rate", "above 0"),
            ("weight_decay = nan", "weight_decay", "from 0"),
            ("retain_weight = inf", "retain_weight", "from 0"),
            ("batch = 0", "batch", "from 1"),
            ("perturbations = 0", "perturbations", "from 1"),
            ("retain_batch = 0", "retain_batch", "from 1"),
            ("sigma = [-1.0, 2.0]", "sigma", "first ≤ last"),
            ("sigma = [2.0, 1.0]", "sigma", "first ≤ last"),
            ("sigma = 1.0", "sigma", "two numbers"),
            ("stop_accuracy = 1.5", "stop_accuracy", "from 0 to 1"),
            ("[synthetic]\ncount = 0", "synthetic.count", "from 1"),
            (
                "[synthetic]\nthreshold = nan",
                "synthetic.threshold",
                "from 0 to 1",
            ),
            ("max_steps = 99999999999", "max_steps", "to 1000000"),
            ("unknown_float = nan", "unknown_float", "finite"),
        ] {
            let settings: toml::Table = text.parse().unwrap();
            let error = check_settings(&settings).unwrap_err();
            assert!(
                error.starts_with(key) && error.contains(allowed),
                "{text}: {error}"
            );
        }
        let fine: toml::Table = "learning_rate = 1e-3\nsigma = [0.1, 2]\nbatch = 4\n"
            .parse()
            .unwrap();
        check_settings(&fine).unwrap();
    }
}
