//! The embedding map: t-SNE of embeddings in two dimensions, for one model or for the original
//! and the edited model side by side.
//!
//! Neighbours are exact: every distance comes from one matrix product on the CPU backend, so
//! the affinities do not depend on a search tree. The layout is optimised by `bhtsne` with its
//! FFT-interpolated gradient (FIt-SNE, Linderman et al., Nature Methods 2019: the t-SNE
//! objective of van der Maaten 2014, its repulsion evaluated on a grid instead of a
//! Barnes–Hut tree), from a starting layout drawn from the seed. Each map is optimised on one
//! thread, because a parallel sum adds in an order that changes from run to run; the two maps
//! of a before/after pair run at the same time instead, one per core.
//!
//! A before/after pair starts from the same layout, and the edited model's map is then turned,
//! mirrored if that fits better, scaled and moved onto the original's (orthogonal Procrustes):
//! t-SNE does not care about those, so the two maps can be compared point by point.

use bhtsne::{Neighbor, tSNE};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::clip::host_values;
use crate::data::shapes::{Color, Rng};
use crate::eval::snapshot::HeadEmbeddings;

/// How a map is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapOptions {
    /// The effective number of neighbours each point keeps (t-SNE's perplexity); lowered to a
    /// third of the points when there are few.
    pub perplexity: f32,
    /// Optimisation steps (the first third with early exaggeration).
    pub iterations: usize,
    /// Seed of the starting layout.
    pub seed: u64,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 750,
            seed: 0,
        }
    }
}

impl MapOptions {
    /// Checks the settings against the ranges t-SNE accepts (its own code stops the program
    /// outside some of them); a message names the setting by the caller's name for it.
    pub fn check(&self, perplexity_name: &str, iterations_name: &str) -> Result<(), String> {
        if !(self.perplexity.is_finite() && (1.0..=1000.0).contains(&self.perplexity)) {
            return Err(format!(
                "{perplexity_name} must be from 1 to 1000, got {}",
                self.perplexity
            ));
        }
        if !(1..=100_000).contains(&self.iterations) {
            return Err(format!(
                "{iterations_name} must be from 1 to 100000, got {}",
                self.iterations
            ));
        }
        Ok(())
    }
}

/// The fewest points a map is drawn for.
pub const MIN_POINTS: usize = 4;

/// A point's place on a map.
pub type Place = [f32; 2];

/// The map of `rows` (`n × dim`, row-major): one place per row. `on_iteration` hears each
/// finished optimisation step.
pub fn tsne(
    rows: &[f32],
    dim: usize,
    options: &MapOptions,
    on_iteration: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Place>, String> {
    let n = check_rows(rows, dim)?;
    let perplexity = options.perplexity.min((n - 1) as f32 / 3.0);
    let neighbours = nearest_neighbours(rows, dim, (3.0 * perplexity) as usize);
    // The optimiser asserts on degenerate inputs (e.g. every point the same); a map that
    // cannot be placed is an error for the caller, never a crash of the run or the app.
    let places = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        optimise(&neighbours, perplexity, options, on_iteration)
    }))
    .map_err(|_| "t-SNE could not place these points".to_string())?;
    if places.iter().flatten().any(|v| !v.is_finite()) {
        return Err("t-SNE placed a point at a non-finite position".to_string());
    }
    Ok(places)
}

/// The maps of the same points embedded by two models, the second aligned onto the first;
/// `on_iteration` hears each step of either map.
pub fn before_after(
    before: &[f32],
    after: &[f32],
    dim: usize,
    options: &MapOptions,
    on_iteration: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<Place>, Vec<Place>), String> {
    if before.len() != after.len() {
        return Err(format!(
            "the two models embedded {} and {} values; a before/after map needs the same points",
            before.len(),
            after.len()
        ));
    }
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| tsne(after, dim, options, on_iteration));
        let first = tsne(before, dim, options, on_iteration);
        let second = second
            .join()
            .unwrap_or_else(|_| Err("the map of the edited model failed".to_string()));
        (first, second)
    });
    let first = first?;
    let mut second = second?;
    align(&first, &mut second);
    Ok((first, second))
}

fn check_rows(rows: &[f32], dim: usize) -> Result<usize, String> {
    if dim == 0 || !rows.len().is_multiple_of(dim) {
        return Err(format!(
            "{} values do not form rows of {dim} dimensions",
            rows.len()
        ));
    }
    let n = rows.len() / dim;
    if n < MIN_POINTS {
        return Err(format!("a map needs at least {MIN_POINTS} points, got {n}"));
    }
    if let Some(bad) = rows.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "point {} has a value that is not finite",
            bad / dim
        ));
    }
    Ok(n)
}

/// Rows of points per matrix product when finding neighbours (bounds the scratch memory to
/// `ROWS_PER_PRODUCT × n` distances).
const ROWS_PER_PRODUCT: usize = 1024;

/// The `k` nearest other points of every point by Euclidean distance, nearest first (ties by
/// index), from exact distances.
pub fn nearest_neighbours(rows: &[f32], dim: usize, k: usize) -> Vec<Vec<Neighbor<f32>>> {
    let n = rows.len() / dim;
    let k = k.clamp(1, n - 1);
    let device = Device::flex();
    let all = Tensor::<2>::from_data(TensorData::new(rows.to_vec(), [n, dim]), &device);
    let all_t = all.clone().transpose();
    let squared: Vec<f32> = rows
        .chunks(dim)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let mut found = Vec::with_capacity(n);
    for start in (0..n).step_by(ROWS_PER_PRODUCT) {
        let end = (start + ROWS_PER_PRODUCT).min(n);
        let dots = host_values(
            all.clone()
                .slice([start..end, 0..dim])
                .matmul(all_t.clone()),
        );
        // Rows are independent, so they are sorted in parallel without changing the result.
        found.par_extend(dots.par_chunks(n).enumerate().map(|(offset, row)| {
            let i = start + offset;
            let mut candidates: Vec<(f32, usize)> = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, dot)| ((squared[i] + squared[j] - 2.0 * dot).max(0.0), j))
                .collect();
            let by_distance =
                |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            candidates.select_nth_unstable_by(k - 1, by_distance);
            candidates.truncate(k);
            candidates.sort_unstable_by(by_distance);
            candidates
                .into_iter()
                .map(|(d2, index)| Neighbor {
                    index,
                    distance: d2.sqrt(),
                })
                .collect::<Vec<_>>()
        }));
    }
    found
}

/// Optimises a layout for the neighbour graph on one thread (see the module doc).
fn optimise(
    neighbours: &[Vec<Neighbor<f32>>],
    perplexity: f32,
    options: &MapOptions,
    on_iteration: &(dyn Fn(usize) + Sync),
) -> Vec<Place> {
    let n = neighbours.len();
    let mut rng = Rng::new(options.seed);
    let start: Vec<f32> = (0..2 * n).map(|_| 1e-4 * rng.normal()).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool can always be built");
    let points: Vec<usize> = (0..n).collect();
    let iterations = options.iterations.max(1);
    let flat = pool.install(|| {
        let mut fit: tSNE<f32, usize> = tSNE::new(&points);
        fit.perplexity(perplexity)
            .epochs(iterations)
            .stop_lying_epoch(iterations / 3)
            .momentum_switch_epoch(iterations / 3)
            .initial_embedding(start)
            .epoch_callback(|epoch, _| on_iteration(epoch));
        fit.fit_sne_with_neighbors(neighbours);
        fit.embedding()
    });
    flat.chunks(2).map(|p| [p[0], p[1]]).collect()
}

/// Turns, possibly mirrors, scales and moves `moving` onto `reference` (least squares over
/// corresponding points).
pub fn align(reference: &[Place], moving: &mut [Place]) {
    let centre = |points: &[Place]| {
        let n = points.len().max(1) as f32;
        let sum = points
            .iter()
            .fold([0.0f32; 2], |s, p| [s[0] + p[0], s[1] + p[1]]);
        [sum[0] / n, sum[1] / n]
    };
    let (to, from) = (centre(reference), centre(moving));
    // Cross-covariance C = Σ yᵢ xᵢᵀ of the centred points, y moving and x reference.
    let mut c = [[0.0f32; 2]; 2];
    let mut spread = 0.0f32;
    for (x, y) in reference.iter().zip(moving.iter()) {
        let x = [x[0] - to[0], x[1] - to[1]];
        let y = [y[0] - from[0], y[1] - from[1]];
        for r in 0..2 {
            for s in 0..2 {
                c[r][s] += y[r] * x[s];
            }
        }
        spread += y[0] * y[0] + y[1] * y[1];
    }
    // The best rotation by θ maximises cos θ·(C00 + C11) + sin θ·(C01 − C10); mirroring y's
    // second axis first flips the signs of C's second row.
    let rotation = (c[0][0] + c[1][1], c[0][1] - c[1][0]);
    let mirrored = (c[0][0] - c[1][1], c[0][1] + c[1][0]);
    let fit = |(a, b): (f32, f32)| a.hypot(b);
    let mirror = fit(mirrored) > fit(rotation);
    let (a, b) = if mirror { mirrored } else { rotation };
    let angle = b.atan2(a);
    let scale = if spread > 0.0 {
        fit((a, b)) / spread
    } else {
        1.0
    };
    let (sin, cos) = angle.sin_cos();
    for p in moving.iter_mut() {
        let y = [
            p[0] - from[0],
            if mirror {
                from[1] - p[1]
            } else {
                p[1] - from[1]
            },
        ];
        *p = [
            to[0] + scale * (cos * y[0] - sin * y[1]),
            to[1] + scale * (sin * y[0] + cos * y[1]),
        ];
    }
}

/// A result's map: pictures of the forget dataset and its classes' prompts, placed by the
/// original model (before) and the edited one (after).
#[derive(Clone, Debug)]
pub struct EmbeddingMap {
    /// The forget dataset's classes.
    pub classes: Vec<String>,
    /// Indices of the forgotten classes.
    pub forgotten: Vec<usize>,
    /// Every mapped picture, then one point per class for its prompts.
    pub points: Vec<MapPoint>,
}

/// One point of an [`EmbeddingMap`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapPoint {
    /// Its class.
    pub label: usize,
    /// The dataset item it shows; `None` for a class's prompts.
    pub item: Option<usize>,
    /// Where the original model puts it.
    pub before: Place,
    /// Where the edited model puts it, aligned onto the original's map.
    pub after: Place,
}

impl MapPoint {
    /// Where it lies on the after (edited model's) map, or else on the before map.
    pub fn place(&self, after: bool) -> Place {
        if after { self.after } else { self.before }
    }
}

/// Colours of the classes on a map, in class order (Tableau's ten and two more; repeating
/// after twelve), the same in the app and in `report.html`.
const CLASS_COLOURS: [[u8; 3]; 12] = [
    [0x4e, 0x79, 0xa7],
    [0xf2, 0x8e, 0x2b],
    [0xe1, 0x57, 0x59],
    [0x76, 0xb7, 0xb2],
    [0x59, 0xa1, 0x4f],
    [0xed, 0xc9, 0x48],
    [0xb0, 0x7a, 0xa1],
    [0xff, 0x9d, 0xa7],
    [0x9c, 0x75, 0x5f],
    [0x6b, 0x6b, 0x6b],
    [0x17, 0xbe, 0xcf],
    [0x8c, 0x56, 0x4b],
];

/// The colour of class `label`, named `name`, on a map: a class named after a colour (the
/// Shapes world's `red`, `blue`…) is drawn in that colour, the others in a palette.
pub fn class_colour(name: &str, label: usize) -> [u8; 3] {
    Color::ALL
        .iter()
        .find(|c| c.name() == name)
        .map_or(CLASS_COLOURS[label % CLASS_COLOURS.len()], |c| c.rgb())
}

/// The file a result folder keeps its map in, one row per point.
pub const MAP_CSV: &str = "embedding-map.csv";

impl EmbeddingMap {
    /// The map of up to `max_pictures` pictures (evenly spread over the dataset's order) and
    /// every class's prompts, as two models embedded them.
    pub fn of_run(
        before: &HeadEmbeddings,
        after: &HeadEmbeddings,
        classes: &[String],
        forgotten: &[usize],
        max_pictures: usize,
        options: &MapOptions,
    ) -> Result<Self, String> {
        if before.items != after.items || before.dim != after.dim {
            return Err("the two models embedded different pictures".into());
        }
        let rows = before.items.len();
        let kept: Vec<usize> = if rows <= max_pictures {
            (0..rows).collect()
        } else {
            (0..max_pictures).map(|i| i * rows / max_pictures).collect()
        };
        let dim = before.dim;
        let stack = |e: &HeadEmbeddings| -> Vec<f32> {
            kept.iter()
                .flat_map(|&r| e.images[r * dim..(r + 1) * dim].iter().copied())
                .chain(e.classes.iter().copied())
                .collect()
        };
        let (first, second) = before_after(&stack(before), &stack(after), dim, options, &|_| {})?;
        let labels = kept
            .iter()
            .map(|&r| (before.labels[r], Some(before.items[r])))
            .chain((0..classes.len()).map(|c| (c, None)));
        Ok(Self {
            classes: classes.to_vec(),
            forgotten: forgotten.to_vec(),
            points: labels
                .zip(first.into_iter().zip(second))
                .map(|((label, item), (before, after))| MapPoint {
                    label,
                    item,
                    before,
                    after,
                })
                .collect(),
        })
    }

    /// The map as CSV: `kind,class,item,before_x,before_y,after_x,after_y`, kind `picture` or
    /// `prompt` (a class's prompts, with no item).
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("kind,class,item,before_x,before_y,after_x,after_y\n");
        for p in &self.points {
            let (kind, item) = match p.item {
                Some(item) => ("picture", item.to_string()),
                None => ("prompt", String::new()),
            };
            let class = &self.classes[p.label];
            let class = if class.contains([',', '"', '\n']) {
                format!("\"{}\"", class.replace('"', "\"\""))
            } else {
                class.clone()
            };
            csv.push_str(&format!(
                "{kind},{class},{item},{},{},{},{}\n",
                p.before[0], p.before[1], p.after[0], p.after[1]
            ));
        }
        csv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clusters` tight groups of `per` points in 16 dimensions, far apart.
    fn clustered(clusters: usize, per: usize) -> Vec<f32> {
        let mut rng = Rng::new(7);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..16).map(|_| 10.0 * rng.normal()).collect())
            .collect();
        (0..clusters * per)
            .flat_map(|i| {
                centres[i / per]
                    .iter()
                    .map(|c| c + 0.1 * rng.normal())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn distance(a: Place, b: Place) -> f32 {
        (a[0] - b[0]).hypot(a[1] - b[1])
    }

    #[test]
    fn neighbours_are_the_nearest_other_points_nearest_first() {
        let rows = [0.0, 0.0, 1.0, 0.0, 3.0, 0.0, 0.0, 2.5];
        let found = nearest_neighbours(&rows, 2, 2);
        let indices: Vec<Vec<usize>> = found
            .iter()
            .map(|row| row.iter().map(|n| n.index).collect())
            .collect();
        assert_eq!(indices, [vec![1, 3], vec![0, 2], vec![1, 0], vec![0, 1]]);
        assert!((found[3][0].distance - 2.5).abs() < 1e-5);
    }

    #[test]
    fn clusters_stay_together_and_apart_and_the_same_seed_gives_the_same_map() {
        let rows = clustered(3, 30);
        let options = MapOptions {
            iterations: 300,
            ..Default::default()
        };
        let map = tsne(&rows, 16, &options, &|_| {}).unwrap();
        let centre = |c: usize| {
            let points = &map[c * 30..(c + 1) * 30];
            let sum = points
                .iter()
                .fold([0.0, 0.0], |s, p| [s[0] + p[0], s[1] + p[1]]);
            [sum[0] / 30.0, sum[1] / 30.0]
        };
        for c in 0..3 {
            let own = map[c * 30..(c + 1) * 30]
                .iter()
                .map(|&p| distance(p, centre(c)))
                .fold(0.0, f32::max);
            for other in (0..3).filter(|&o| o != c) {
                assert!(
                    distance(centre(c), centre(other)) > 2.0 * own,
                    "cluster {c} (radius {own}) is not apart from cluster {other}"
                );
            }
        }
        assert_eq!(map, tsne(&rows, 16, &options, &|_| {}).unwrap());
        let reseeded = MapOptions { seed: 1, ..options };
        assert_ne!(map, tsne(&rows, 16, &reseeded, &|_| {}).unwrap());
    }

    #[test]
    fn a_turned_mirrored_scaled_and_moved_map_is_aligned_back() {
        let reference: Vec<Place> = vec![[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 4.0]];
        for mirror in [false, true] {
            let (sin, cos) = 0.7f32.sin_cos();
            let mut moving: Vec<Place> = reference
                .iter()
                .map(|p| {
                    let y = if mirror { -p[1] } else { p[1] };
                    [
                        5.0 + 2.5 * (cos * p[0] - sin * y),
                        -1.0 + 2.5 * (sin * p[0] + cos * y),
                    ]
                })
                .collect();
            align(&reference, &mut moving);
            for (a, b) in reference.iter().zip(&moving) {
                assert!(distance(*a, *b) < 1e-4, "mirror {mirror}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn too_few_points_or_ragged_rows_are_refused() {
        assert!(
            tsne(&[0.0; 6], 2, &MapOptions::default(), &|_| {})
                .unwrap_err()
                .contains("at least 4 points")
        );
        assert!(
            tsne(&[0.0; 7], 2, &MapOptions::default(), &|_| {})
                .unwrap_err()
                .contains("rows of 2")
        );
        let mut rows = vec![0.0; 10];
        rows[5] = f32::NAN;
        assert!(
            tsne(&rows, 2, &MapOptions::default(), &|_| {})
                .unwrap_err()
                .contains("point 2")
        );
    }

    #[test]
    fn identical_points_give_a_finite_map_or_an_error_never_a_crash() {
        let options = MapOptions {
            iterations: 50,
            ..MapOptions::default()
        };
        match tsne(&[0.5; 40], 4, &options, &|_| {}) {
            Ok(places) => assert!(places.iter().flatten().all(|v| v.is_finite())),
            Err(message) => assert!(message.contains("t-SNE"), "{message}"),
        }
    }

    #[test]
    fn settings_outside_what_t_sne_accepts_are_named() {
        let bad = |perplexity, iterations| {
            MapOptions {
                perplexity,
                iterations,
                seed: 0,
            }
            .check("--perplexity", "--iterations")
        };
        assert!(bad(30.0, 750).is_ok());
        assert!(bad(0.5, 750).unwrap_err().contains("--perplexity"));
        assert!(bad(f32::NAN, 750).unwrap_err().contains("--perplexity"));
        assert!(bad(30.0, 0).unwrap_err().contains("--iterations"));
    }
}
