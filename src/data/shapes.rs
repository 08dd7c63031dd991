//! "Shapes": a procedural image world with exactly known concepts.
//!
//! Unlearning experiments need a forget set and a retain set whose concepts are unambiguous
//! (e.g. "red circles" versus everything else) and which can be regenerated bit for bit anywhere.
//! This module draws coloured geometric shapes and a few fruit icons on simple backgrounds, with
//! anti-aliased signed-distance rendering, templated captions, and a per-index deterministic
//! sampler so that any slice of a dataset can be rebuilt in parallel from `(seed, index)` alone.
//!
//! "orange" is deliberately both a colour and a fruit, so that experiments can probe whether
//! forgetting one sense of a word damages the other.

use image::{Rgb, RgbImage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::f32::consts::TAU;

/// Resolution the world is designed for: small enough to render thousands per second per core,
/// large enough that every shape stays recognisable.
pub const DEFAULT_SIZE: u32 = 64;

/// Radius, in shape units, of a circle that contains every object; it bounds the pixels whose
/// signed distance must be evaluated and keeps objects inside the frame.
const OBJECT_RADIUS: f32 = 1.2;

/// Smallest RGB distance between an object's main colour and its background, so the object
/// is always visible and the background never reads as the object's colour.
const MIN_CONTRAST: f32 = 110.0;

/// A small deterministic random generator (SplitMix64).
///
/// Hand-rolled so that datasets are reproducible across platforms and dependency upgrades,
/// which a general-purpose RNG crate does not promise.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

/// SplitMix64 finaliser: a strong 64-bit mixer used both to step the generator and to hash
/// `(seed, index)` pairs into independent streams.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// Starts a stream from a seed; equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Starts the stream for item `index` of dataset `seed`, so each item can be generated on
    /// its own (in any order, on any thread) and still match a sequential run.
    pub fn for_index(seed: u64, index: u64) -> Self {
        Self::new(mix64(
            seed ^ mix64(index.wrapping_add(0x9E37_79B9_7F4A_7C15)),
        ))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform float in `[0, 1)`, with 24 bits of precision (all an `f32` can hold).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform float in `[lo, hi)`, for continuous scene parameters.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform index in `0..n` (`n` must be positive); the modulo bias is far below anything
    /// a dataset of this kind could detect.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below needs a non-empty range");
        (self.next_u64() % n as u64) as usize
    }

    /// A standard normal sample (Box–Muller), for reproducible weight initialisation.
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.next_f32(); // in (0, 1], so the logarithm is finite
        let u2 = self.next_f32();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The geometric shapes of the world; each has a distinct silhouette so that "shape" is a
/// visually well-defined concept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A disc.
    Circle,
    /// An axis-aligned square before rotation.
    Square,
    /// An equilateral triangle pointing up before rotation.
    Triangle,
    /// A five-pointed star.
    Star,
    /// A heart.
    Heart,
    /// A plus-shaped cross.
    Cross,
    /// An annulus.
    Ring,
    /// A rhombus taller than it is wide (so it differs from a rotated square).
    Diamond,
    /// A regular hexagon.
    Hexagon,
    /// An arrow pointing right before rotation.
    Arrow,
}

impl Shape {
    /// Every shape, in a fixed order, for enumeration and uniform sampling.
    pub const ALL: [Shape; 10] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Heart,
        Shape::Cross,
        Shape::Ring,
        Shape::Diamond,
        Shape::Hexagon,
        Shape::Arrow,
    ];

    /// The word used in captions.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Heart => "heart",
            Shape::Cross => "cross",
            Shape::Ring => "ring",
            Shape::Diamond => "diamond",
            Shape::Hexagon => "hexagon",
            Shape::Arrow => "arrow",
        }
    }

    /// Signed distance from `p` to the shape in shape units (negative inside), with the
    /// shape filling roughly the unit disc and `y` pointing down as in images.
    fn distance(self, p: [f32; 2]) -> f32 {
        match self {
            Shape::Circle => len(p) - 0.82,
            Shape::Square => sd_box(p, [0.66, 0.66]),
            Shape::Triangle => sd_triangle(p, [0.0, -1.0], [0.866, 0.5], [-0.866, 0.5]),
            Shape::Star => sd_star5([p[0], -p[1]], 1.0, 0.45),
            Shape::Heart => {
                const K: f32 = 0.55;
                sd_heart([p[0] * K, -p[1] * K + K]) / K
            }
            Shape::Cross => sd_cross(p, [1.0, 0.32]),
            Shape::Ring => (len(p) - 0.75).abs() - 0.22,
            Shape::Diamond => sd_rhombus(p, [0.62, 1.0]),
            Shape::Hexagon => sd_hexagon(p, 0.866),
            Shape::Arrow => sd_box([p[0] + 0.4, p[1]], [0.55, 0.22]).min(sd_triangle(
                p,
                [1.0, 0.0],
                [0.05, 0.68],
                [0.05, -0.68],
            )),
        }
    }
}

/// The colours of the world, each with one fixed RGB value so "red" always means the same
/// pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// Red.
    Red,
    /// Orange (also the colour of the orange fruit).
    Orange,
    /// Yellow.
    Yellow,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Purple.
    Purple,
    /// Pink.
    Pink,
    /// Brown.
    Brown,
    /// Black.
    Black,
    /// White.
    White,
}

impl Color {
    /// Every colour, in a fixed order, for enumeration and uniform sampling.
    pub const ALL: [Color; 10] = [
        Color::Red,
        Color::Orange,
        Color::Yellow,
        Color::Green,
        Color::Blue,
        Color::Purple,
        Color::Pink,
        Color::Brown,
        Color::Black,
        Color::White,
    ];

    /// The word used in captions.
    pub fn name(self) -> &'static str {
        match self {
            Color::Red => "red",
            Color::Orange => "orange",
            Color::Yellow => "yellow",
            Color::Green => "green",
            Color::Blue => "blue",
            Color::Purple => "purple",
            Color::Pink => "pink",
            Color::Brown => "brown",
            Color::Black => "black",
            Color::White => "white",
        }
    }

    /// The fixed RGB value objects of this colour are painted with.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 30, 35],
            Color::Orange => [245, 140, 20],
            Color::Yellow => [245, 220, 40],
            Color::Green => [40, 165, 60],
            Color::Blue => [40, 90, 220],
            Color::Purple => [135, 55, 185],
            Color::Pink => [245, 130, 190],
            Color::Brown => [125, 75, 35],
            Color::Black => [20, 20, 20],
            Color::White => [245, 245, 245],
        }
    }
}

/// Coarse object size, a captionable concept separate from the exact `Scene::scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Object radius 16–20% of the image side.
    Small,
    /// Object radius 26–31% of the image side.
    Medium,
    /// Object radius 37–41% of the image side.
    Big,
}

impl Size {
    /// Every size, for uniform sampling.
    pub const ALL: [Size; 3] = [Size::Small, Size::Medium, Size::Big];

    /// The word used in captions.
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Big => "big",
        }
    }

    /// Range of `Scene::scale` (object radius as a fraction of the image side) for this size;
    /// the ranges are disjoint so the word always matches the picture.
    pub fn scale_range(self) -> (f32, f32) {
        match self {
            Size::Small => (0.16, 0.20),
            Size::Medium => (0.26, 0.31),
            Size::Big => (0.37, 0.41),
        }
    }
}

/// Background texture, a nuisance factor that also gives captions something to vary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// A single flat colour.
    Plain,
    /// Diagonal stripes of two close tones.
    Striped,
    /// A grid of dots of a close tone.
    Dotted,
    /// Per-pixel noise around the background colour.
    Noise,
}

impl Background {
    /// Every background, for uniform sampling.
    pub const ALL: [Background; 4] = [
        Background::Plain,
        Background::Striped,
        Background::Dotted,
        Background::Noise,
    ];

    /// The adjective used in captions ("on a noisy background").
    pub fn adjective(self) -> &'static str {
        match self {
            Background::Plain => "plain",
            Background::Striped => "striped",
            Background::Dotted => "dotted",
            Background::Noise => "noisy",
        }
    }
}

/// Fruit icons drawn in their natural colours: a second kind of concept (objects rather than
/// attributes), and the source of the colour/fruit ambiguity of "orange".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fruit {
    /// A red apple with a stem and leaf.
    Apple,
    /// An orange with a small green leaf.
    Orange,
    /// A yellow crescent banana.
    Banana,
    /// Two red cherries on green stems.
    Cherry,
    /// A pale-yellow lemon with pointed ends.
    Lemon,
}

/// One filled primitive of an object, in shape units.
#[derive(Clone, Copy)]
enum Prim {
    /// A whole geometric shape.
    Shape(Shape),
    Circle([f32; 2], f32),
    /// Centre and radii; the distance is approximate, which only affects edge softness.
    Ellipse([f32; 2], [f32; 2]),
    /// End points and half thickness.
    Segment([f32; 2], [f32; 2], f32),
    /// Disc minus another disc: centre, radius, cut centre, cut radius.
    Crescent([f32; 2], f32, [f32; 2], f32),
}

impl Prim {
    fn distance(self, p: [f32; 2]) -> f32 {
        match self {
            Prim::Shape(shape) => shape.distance(p),
            Prim::Circle(c, r) => len(sub(p, c)) - r,
            Prim::Ellipse(c, r) => {
                let q = sub(p, c);
                (len([q[0] / r[0], q[1] / r[1]]) - 1.0) * r[0].min(r[1])
            }
            Prim::Segment(a, b, r) => {
                let pa = sub(p, a);
                let ba = sub(b, a);
                let h = (dot(pa, ba) / dot(ba, ba)).clamp(0.0, 1.0);
                len([pa[0] - ba[0] * h, pa[1] - ba[1] * h]) - r
            }
            Prim::Crescent(c, r, k, kr) => (len(sub(p, c)) - r).max(kr - len(sub(p, k))),
        }
    }
}

/// A primitive and the colour it is painted with, composited in order.
type Layer = (Prim, [u8; 3]);

const LEAF: [u8; 3] = [50, 150, 40];
const STEM: [u8; 3] = [100, 65, 30];

impl Fruit {
    /// Every fruit, for uniform sampling.
    pub const ALL: [Fruit; 5] = [
        Fruit::Apple,
        Fruit::Orange,
        Fruit::Banana,
        Fruit::Cherry,
        Fruit::Lemon,
    ];

    /// The word used in captions.
    pub fn name(self) -> &'static str {
        match self {
            Fruit::Apple => "apple",
            Fruit::Orange => "orange",
            Fruit::Banana => "banana",
            Fruit::Cherry => "cherry",
            Fruit::Lemon => "lemon",
        }
    }

    /// The colour family of the fruit's body, which the background must avoid.
    pub fn color(self) -> Color {
        match self {
            Fruit::Apple | Fruit::Cherry => Color::Red,
            Fruit::Orange => Color::Orange,
            Fruit::Banana | Fruit::Lemon => Color::Yellow,
        }
    }

    /// The icon as painter's-order layers in shape units (y down).
    fn layers(self) -> &'static [Layer] {
        const APPLE: [u8; 3] = [200, 25, 40];
        const CHERRY: [u8; 3] = [170, 10, 45];
        const BANANA: [u8; 3] = [240, 205, 45];
        const LEMON: [u8; 3] = [250, 238, 90];
        match self {
            Fruit::Apple => &[
                (Prim::Segment([0.0, -0.45], [0.1, -0.95], 0.07), STEM),
                (Prim::Circle([-0.3, 0.1], 0.68), APPLE),
                (Prim::Circle([0.3, 0.1], 0.68), APPLE),
                (Prim::Ellipse([0.35, -0.8], [0.26, 0.12]), LEAF),
            ],
            Fruit::Orange => &[
                (Prim::Circle([0.0, 0.08], 0.86), [245, 140, 20]),
                (Prim::Ellipse([0.24, -0.84], [0.24, 0.11]), LEAF),
                (Prim::Circle([0.0, -0.74], 0.07), [40, 100, 30]),
            ],
            Fruit::Banana => &[
                (
                    Prim::Crescent([0.0, -0.45], 1.0, [0.0, -0.85], 1.05),
                    BANANA,
                ),
                (Prim::Segment([0.88, -0.5], [1.0, -0.72], 0.06), STEM),
                (Prim::Circle([-0.93, -0.47], 0.06), STEM),
            ],
            Fruit::Cherry => &[
                (Prim::Segment([-0.42, 0.4], [0.1, -0.88], 0.05), LEAF),
                (Prim::Segment([0.45, 0.45], [0.1, -0.88], 0.05), LEAF),
                (Prim::Circle([-0.42, 0.45], 0.4), CHERRY),
                (Prim::Circle([0.45, 0.5], 0.38), CHERRY),
            ],
            Fruit::Lemon => &[
                (Prim::Ellipse([0.0, 0.0], [0.85, 0.62]), LEMON),
                (Prim::Circle([0.85, 0.0], 0.15), LEMON),
                (Prim::Circle([-0.85, 0.0], 0.15), LEMON),
            ],
        }
    }
}

/// What a scene depicts: the concept an unlearning experiment targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    /// A coloured geometric shape, e.g. a red circle.
    Shape {
        /// Which silhouette.
        shape: Shape,
        /// Which fill colour.
        color: Color,
    },
    /// A fruit icon in its natural colours.
    Fruit(Fruit),
}

impl Object {
    /// The colour family the object reads as, which the background must contrast with.
    pub fn color(self) -> Color {
        match self {
            Object::Shape { color, .. } => color,
            Object::Fruit(fruit) => fruit.color(),
        }
    }
}

/// Which kinds of object a sampler may produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// Shapes and fruits (one scene in five is a fruit).
    #[default]
    Any,
    /// Coloured shapes only.
    Shapes,
    /// Fruits only.
    Fruits,
}

/// Restrictions on sampled scenes, used to build forget sets ("only red circles") and retain
/// sets ("anything but red").
///
/// A fixed `fruit` forces a fruit; otherwise a fixed `shape` or `color` forces a shape;
/// otherwise `kind` decides. Exclusions remove choices from the uniform draws.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Which kinds of object are allowed when nothing more specific is fixed.
    pub kind: ObjectKind,
    /// Forces this shape (and therefore a shape rather than a fruit).
    pub shape: Option<Shape>,
    /// Forces this colour (and therefore a shape rather than a fruit).
    pub color: Option<Color>,
    /// Forces this fruit.
    pub fruit: Option<Fruit>,
    /// Shapes that must not appear.
    pub exclude_shapes: Vec<Shape>,
    /// Colours that must not be used for shapes, nor appear as the body colour of a fruit.
    pub exclude_colors: Vec<Color>,
    /// Fruits that must not appear.
    pub exclude_fruits: Vec<Fruit>,
    /// Colour–shape pairs that must not appear together ("everything but red stars"), while
    /// each may appear with others.
    #[serde(default)]
    pub exclude_pairs: Vec<(Color, Shape)>,
}

impl Constraints {
    /// Whether `scene` shows an excluded colour–shape pair.
    fn excludes_pair(&self, scene: &Scene) -> bool {
        match scene.object {
            Object::Shape { shape, color } => self.exclude_pairs.contains(&(color, shape)),
            Object::Fruit(_) => false,
        }
    }
}

/// Draws of an item tried before giving up on [`Constraints::exclude_pairs`]; excluded pairs
/// are a small share of all scenes, so a handful always suffices.
const PAIR_DRAWS: u64 = 1000;

/// One fully specified image: everything `render` needs, so a dataset can be stored as scene
/// descriptions and re-rendered at any resolution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// What is drawn.
    pub object: Object,
    /// The size word for captions; `scale` lies in its range.
    pub size: Size,
    /// Background texture.
    pub background: Background,
    /// Base background colour, chosen to contrast with the object.
    pub background_color: [u8; 3],
    /// Object centre, horizontal, as a fraction of the width (0 = left).
    pub x: f32,
    /// Object centre, vertical, as a fraction of the height (0 = top).
    pub y: f32,
    /// Clockwise rotation of the object in radians.
    pub rotation: f32,
    /// Object radius as a fraction of the image side.
    pub scale: f32,
}

impl Scene {
    /// Draws a random scene obeying `constraints`.
    ///
    /// # Panics
    /// If the constraints leave nothing to draw (e.g. every colour excluded).
    pub fn random(rng: &mut Rng, constraints: &Constraints) -> Scene {
        let c = constraints;
        let fruits: Vec<Fruit> = Fruit::ALL
            .into_iter()
            .filter(|f| c.fruit.is_none_or(|x| x == *f))
            .filter(|f| !c.exclude_fruits.contains(f) && !c.exclude_colors.contains(&f.color()))
            .collect();
        let shapes: Vec<Shape> = Shape::ALL
            .into_iter()
            .filter(|s| c.shape.is_none_or(|x| x == *s) && !c.exclude_shapes.contains(s))
            .collect();
        let colors: Vec<Color> = Color::ALL
            .into_iter()
            .filter(|k| c.color.is_none_or(|x| x == *k) && !c.exclude_colors.contains(k))
            .collect();
        let fruit = if c.fruit.is_some() {
            true
        } else if c.shape.is_some() || c.color.is_some() {
            false
        } else {
            match c.kind {
                ObjectKind::Shapes => false,
                ObjectKind::Fruits => true,
                ObjectKind::Any => {
                    shapes.is_empty()
                        || colors.is_empty()
                        || (!fruits.is_empty() && rng.below(5) == 0)
                }
            }
        };
        let object = if fruit {
            assert!(!fruits.is_empty(), "constraints exclude every fruit");
            Object::Fruit(rng.pick(&fruits))
        } else {
            assert!(!shapes.is_empty(), "constraints exclude every shape");
            assert!(!colors.is_empty(), "constraints exclude every colour");
            Object::Shape {
                shape: rng.pick(&shapes),
                color: rng.pick(&colors),
            }
        };
        let size = rng.pick(&Size::ALL);
        let (lo, hi) = size.scale_range();
        let scale = rng.range(lo, hi);
        // Keep the whole object inside the frame.
        let margin = (scale * OBJECT_RADIUS).min(0.5);
        let x = rng.range(margin, 1.0 - margin);
        let y = rng.range(margin, 1.0 - margin);
        let rotation = match object {
            Object::Shape { .. } => rng.range(0.0, TAU),
            // Fruits are recognised upright; only tilt them.
            Object::Fruit(_) => rng.range(-0.5, 0.5),
        };
        Scene {
            object,
            size,
            background: rng.pick(&Background::ALL),
            background_color: background_color(rng, object.color()),
            x,
            y,
            rotation,
            scale,
        }
    }
}

/// Euclidean RGB distance, the contrast measure between object and background.
fn rgb_distance(a: [u8; 3], b: [u8; 3]) -> f32 {
    (0..3)
        .map(|i| (a[i] as f32 - b[i] as f32).powi(2))
        .sum::<f32>()
        .sqrt()
}

/// A muted palette colour from another family, at least `MIN_CONTRAST` away from `object`.
fn background_color(rng: &mut Rng, object: Color) -> [u8; 3] {
    let target = object.rgb();
    let others: Vec<Color> = Color::ALL.into_iter().filter(|c| *c != object).collect();
    for _ in 0..32 {
        let base = rng.pick(&others).rgb();
        let t = rng.range(0.2, 0.5);
        let grey = rng.range(90.0, 170.0);
        let candidate = base.map(|v| (v as f32 * (1.0 - t) + grey * t).round() as u8);
        if rgb_distance(candidate, target) >= MIN_CONTRAST {
            return candidate;
        }
    }
    // Black and white are as far apart as colours get; one of them always contrasts.
    let (black, white) = ([15, 15, 15], [240, 240, 240]);
    if rgb_distance(black, target) > rgb_distance(white, target) {
        black
    } else {
        white
    }
}

/// The scene for item `index` of dataset `seed`: depends on nothing else, so datasets are
/// reproducible and any slice can be generated independently.
pub fn sample(seed: u64, index: u64, constraints: &Constraints) -> Scene {
    Scene::random(&mut Rng::for_index(seed, index), constraints)
}

/// The scene and a caption for item `index` of dataset `seed`, both depending only on
/// `(seed, index)`; the caption template is drawn from the same per-item stream.
pub fn sample_captioned(seed: u64, index: u64, constraints: &Constraints) -> (Scene, String) {
    // The first draw uses the item's own generator, so sets without excluded pairs are the
    // same as they always were; a redraw shifts the seed.
    let mut draw: u64 = 0;
    loop {
        let mut rng = Rng::for_index(
            seed.wrapping_add(draw.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            index,
        );
        let scene = Scene::random(&mut rng, constraints);
        draw += 1;
        if !constraints.excludes_pair(&scene) || draw == PAIR_DRAWS {
            let text = caption(&scene, &mut rng);
            return (scene, text);
        }
    }
}

/// "an" before a vowel sound, "a" otherwise; every word of this vocabulary starting with a
/// vowel letter also starts with a vowel sound.
pub fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// A templated English caption naming the object (shape and colour, or fruit), often its size,
/// and its background, with varied phrasing so a text encoder does not key on one template.
pub fn caption(scene: &Scene, rng: &mut Rng) -> String {
    const PREFIXES: [&str; 6] = [
        "",
        "a photo of ",
        "a picture of ",
        "an image of ",
        "a drawing of ",
        "a rendering of ",
    ];
    let mut words: Vec<&str> = Vec::new();
    if rng.below(3) != 0 {
        words.push(scene.size.name());
    }
    match scene.object {
        Object::Shape { shape, color } => {
            words.push(color.name());
            words.push(shape.name());
        }
        Object::Fruit(fruit) => words.push(fruit.name()),
    }
    let phrase = words.join(" ");
    let bg = scene.background.adjective();
    let prefix = rng.pick(&PREFIXES);
    let place = if rng.below(2) == 0 {
        format!("on {} {bg} background", article(bg))
    } else {
        format!("against {} {bg} background", article(bg))
    };
    format!("{prefix}{} {phrase} {place}", article(&phrase))
}

fn len(p: [f32; 2]) -> f32 {
    (p[0] * p[0] + p[1] * p[1]).sqrt()
}

fn dot(a: [f32; 2], b: [f32; 2]) -> f32 {
    a[0] * b[0] + a[1] * b[1]
}

fn sub(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

// Exact 2D signed distance functions after Inigo Quilez (iquilezles.org/articles/distfunctions2d).

fn sd_box(p: [f32; 2], b: [f32; 2]) -> f32 {
    let d = [p[0].abs() - b[0], p[1].abs() - b[1]];
    len([d[0].max(0.0), d[1].max(0.0)]) + d[0].max(d[1]).min(0.0)
}

fn sd_triangle(p: [f32; 2], p0: [f32; 2], p1: [f32; 2], p2: [f32; 2]) -> f32 {
    let (e0, e1, e2) = (sub(p1, p0), sub(p2, p1), sub(p0, p2));
    let (v0, v1, v2) = (sub(p, p0), sub(p, p1), sub(p, p2));
    let proj = |v: [f32; 2], e: [f32; 2]| {
        let h = (dot(v, e) / dot(e, e)).clamp(0.0, 1.0);
        [v[0] - e[0] * h, v[1] - e[1] * h]
    };
    let (q0, q1, q2) = (proj(v0, e0), proj(v1, e1), proj(v2, e2));
    let s = (e0[0] * e2[1] - e0[1] * e2[0]).signum();
    let d = dot(q0, q0).min(dot(q1, q1)).min(dot(q2, q2));
    let side = (s * (v0[0] * e0[1] - v0[1] * e0[0]))
        .min(s * (v1[0] * e1[1] - v1[1] * e1[0]))
        .min(s * (v2[0] * e2[1] - v2[1] * e2[0]));
    -d.sqrt() * side.signum()
}

fn sd_star5(p: [f32; 2], r: f32, rf: f32) -> f32 {
    let k1 = [0.809_017, -0.587_785_24];
    let k2 = [-k1[0], k1[1]];
    let mut p = [p[0].abs(), p[1]];
    let m = 2.0 * dot(k1, p).max(0.0);
    p = [p[0] - m * k1[0], p[1] - m * k1[1]];
    let m = 2.0 * dot(k2, p).max(0.0);
    p = [p[0] - m * k2[0], p[1] - m * k2[1]];
    p = [p[0].abs(), p[1] - r];
    let ba = [rf * -k1[1], rf * k1[0] - 1.0];
    let h = (dot(p, ba) / dot(ba, ba)).clamp(0.0, r);
    len([p[0] - ba[0] * h, p[1] - ba[1] * h]) * (p[1] * ba[0] - p[0] * ba[1]).signum()
}

fn sd_heart(p: [f32; 2]) -> f32 {
    let p = [p[0].abs(), p[1]];
    if p[1] + p[0] > 1.0 {
        return len(sub(p, [0.25, 0.75])) - std::f32::consts::SQRT_2 / 4.0;
    }
    let a = sub(p, [0.0, 1.0]);
    let m = 0.5 * (p[0] + p[1]).max(0.0);
    let b = sub(p, [m, m]);
    dot(a, a).min(dot(b, b)).sqrt() * (p[0] - p[1]).signum()
}

fn sd_cross(p: [f32; 2], b: [f32; 2]) -> f32 {
    let (ax, ay) = (p[0].abs(), p[1].abs());
    let (x, y) = if ay > ax { (ay, ax) } else { (ax, ay) };
    let q = [x - b[0], y - b[1]];
    let k = q[0].max(q[1]);
    let w = if k > 0.0 { q } else { [b[1] - x, -k] };
    k.signum() * len([w[0].max(0.0), w[1].max(0.0)])
}

fn sd_rhombus(p: [f32; 2], b: [f32; 2]) -> f32 {
    let p = [p[0].abs(), p[1].abs()];
    let c = [b[0] - 2.0 * p[0], b[1] - 2.0 * p[1]];
    let h = ((c[0] * b[0] - c[1] * b[1]) / dot(b, b)).clamp(-1.0, 1.0);
    let d = len([p[0] - 0.5 * b[0] * (1.0 - h), p[1] - 0.5 * b[1] * (1.0 + h)]);
    d * (p[0] * b[1] + p[1] * b[0] - b[0] * b[1]).signum()
}

fn sd_hexagon(p: [f32; 2], r: f32) -> f32 {
    // Pointy ends left and right.
    let k = [-0.866_025_4, 0.5, 0.577_350_26];
    let mut p = [p[1].abs(), p[0].abs()];
    let m = 2.0 * (k[0] * p[0] + k[1] * p[1]).min(0.0);
    p = [p[0] - m * k[0], p[1] - m * k[1]];
    let q = [p[0] - p[0].clamp(-k[2] * r, k[2] * r), p[1] - r];
    len(q) * q[1].signum()
}

/// Cheap integer hash of a pixel, for the noise texture.
fn hash2(x: u32, y: u32, salt: u64) -> u64 {
    mix64(salt ^ ((x as u64) << 32 | y as u64))
}

/// Fills `img` with the scene's background texture.
fn paint_background(scene: &Scene, img: &mut RgbImage) {
    let base = scene.background_color;
    let luma = 0.299 * base[0] as f32 + 0.587 * base[1] as f32 + 0.114 * base[2] as f32;
    // A second tone close to the base, lighter on dark backgrounds and darker on light ones.
    let shift = if luma < 128.0 { 35 } else { -35 };
    let alt = base.map(|v| (v as i32 + shift).clamp(0, 255) as u8);
    let size = img.width();
    let period = (size / 8).max(4);
    let salt = u64::from_le_bytes([base[0], base[1], base[2], 0, 0, 0, 0, 0]);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let rgb = match scene.background {
            Background::Plain => base,
            Background::Striped => {
                if (x + y) % period < period / 2 {
                    alt
                } else {
                    base
                }
            }
            Background::Dotted => {
                let dx = (x % period) as f32 + 0.5 - period as f32 / 2.0;
                let dy = (y % period) as f32 + 0.5 - period as f32 / 2.0;
                if dx * dx + dy * dy <= (period as f32 * 0.25).powi(2) {
                    alt
                } else {
                    base
                }
            }
            Background::Noise => {
                let n = (hash2(x, y, salt) % 51) as i32 - 25;
                base.map(|v| (v as i32 + n).clamp(0, 255) as u8)
            }
        };
        *px = Rgb(rgb);
    }
}

/// Where an object lands in an image: the pixel box worth evaluating and the map from pixel
/// centres to shape units.
struct Placement {
    width: usize,
    xs: (u32, u32),
    ys: (u32, u32),
    centre: (f32, f32),
    sin_cos: (f32, f32),
    radius_px: f32,
}

impl Placement {
    fn new(scene: &Scene, size: u32) -> Self {
        let side = size as f32;
        let radius_px = (scene.scale * side).max(1e-3);
        let (cx, cy) = (scene.x * side, scene.y * side);
        let reach = radius_px * OBJECT_RADIUS + 1.0;
        let lo = |c: f32| (c - reach).floor().max(0.0) as u32;
        let hi = |c: f32| ((c + reach).ceil().max(0.0) as u32).min(size);
        Placement {
            width: size as usize,
            xs: (lo(cx), hi(cx)),
            ys: (lo(cy), hi(cy)),
            centre: (cx, cy),
            sin_cos: scene.rotation.sin_cos(),
            radius_px,
        }
    }

    /// Blends `color` over `buf` with anti-aliased coverage from the signed distance `sdf`.
    ///
    /// Generic over the distance function so each primitive gets its own tight loop: with a
    /// runtime `match` inside the loop the compiler evaluated every shape for every pixel.
    fn fill(&self, buf: &mut [u8], color: [u8; 3], sdf: impl Fn([f32; 2]) -> f32) {
        let (sin, cos) = self.sin_cos;
        let inv = 1.0 / self.radius_px;
        let target = color.map(f32::from);
        for py in self.ys.0..self.ys.1 {
            let dy = py as f32 + 0.5 - self.centre.1;
            for px in self.xs.0..self.xs.1 {
                let dx = px as f32 + 0.5 - self.centre.0;
                // Inverse (clockwise) rotation takes pixel offsets into shape units.
                let q = [(cos * dx + sin * dy) * inv, (-sin * dx + cos * dy) * inv];
                let cover = (0.5 - sdf(q) * self.radius_px).clamp(0.0, 1.0);
                if cover > 0.0 {
                    let at = 3 * (py as usize * self.width + px as usize);
                    for (v, t) in buf[at..at + 3].iter_mut().zip(target) {
                        let old = *v as f32;
                        *v = (old + (t - old) * cover + 0.5) as u8;
                    }
                }
            }
        }
    }

    /// Paints one primitive, choosing the monomorphised loop for its distance function.
    fn paint(&self, buf: &mut [u8], prim: Prim, color: [u8; 3]) {
        match prim {
            Prim::Shape(shape) => match shape {
                Shape::Circle => self.fill(buf, color, |q| Shape::Circle.distance(q)),
                Shape::Square => self.fill(buf, color, |q| Shape::Square.distance(q)),
                Shape::Triangle => self.fill(buf, color, |q| Shape::Triangle.distance(q)),
                Shape::Star => self.fill(buf, color, |q| Shape::Star.distance(q)),
                Shape::Heart => self.fill(buf, color, |q| Shape::Heart.distance(q)),
                Shape::Cross => self.fill(buf, color, |q| Shape::Cross.distance(q)),
                Shape::Ring => self.fill(buf, color, |q| Shape::Ring.distance(q)),
                Shape::Diamond => self.fill(buf, color, |q| Shape::Diamond.distance(q)),
                Shape::Hexagon => self.fill(buf, color, |q| Shape::Hexagon.distance(q)),
                Shape::Arrow => self.fill(buf, color, |q| Shape::Arrow.distance(q)),
            },
            Prim::Circle(..) => self.fill(buf, color, |q| prim.distance(q)),
            Prim::Ellipse(..) => self.fill(buf, color, |q| prim.distance(q)),
            Prim::Segment(..) => self.fill(buf, color, |q| prim.distance(q)),
            Prim::Crescent(..) => self.fill(buf, color, |q| prim.distance(q)),
        }
    }
}

/// Renders a scene at `size`×`size` pixels.
///
/// Each primitive's signed distance is evaluated at pixel centres and turned into coverage
/// `clamp(0.5 - d / pixel_width)`, which anti-aliases edges at the cost of one distance
/// evaluation per pixel; only pixels inside the object's bounding box are evaluated.
pub fn render(scene: &Scene, size: u32) -> RgbImage {
    let mut img = RgbImage::new(size, size);
    paint_background(scene, &mut img);
    let placement = Placement::new(scene, size);
    let buf: &mut [u8] = &mut img;
    match scene.object {
        Object::Shape { shape, color } => placement.paint(buf, Prim::Shape(shape), color.rgb()),
        Object::Fruit(fruit) => {
            for &(prim, color) in fruit.layers() {
                placement.paint(buf, prim, color);
            }
        }
    }
    img
}

/// Renders many scenes in parallel (rayon), in order; each image matches `render` exactly.
pub fn render_batch(scenes: &[Scene], size: u32) -> Vec<RgbImage> {
    scenes.par_iter().map(|s| render(s, size)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big, centred, unrotated shape on a plain background, for geometry checks.
    fn centred(shape: Shape, color: Color, background_color: [u8; 3]) -> Scene {
        Scene {
            object: Object::Shape { shape, color },
            size: Size::Big,
            background: Background::Plain,
            background_color,
            x: 0.5,
            y: 0.5,
            rotation: 0.0,
            scale: 0.4,
        }
    }

    /// Pixels where a white-on-black render is mostly object.
    fn mask(shape: Shape) -> Vec<bool> {
        let img = render(&centred(shape, Color::White, [0, 0, 0]), DEFAULT_SIZE);
        img.pixels().map(|p| p.0[0] > 127).collect()
    }

    #[test]
    fn same_seed_and_index_give_identical_images() {
        let c = Constraints::default();
        for index in 0..50 {
            let a = render(&sample(42, index, &c), DEFAULT_SIZE);
            let b = render(&sample(42, index, &c), DEFAULT_SIZE);
            assert_eq!(a.as_raw(), b.as_raw());
            let (s1, t1) = sample_captioned(42, index, &c);
            let (s2, t2) = sample_captioned(42, index, &c);
            assert_eq!((s1, t1), (s2, t2));
        }
    }

    #[test]
    fn different_seeds_and_indices_differ() {
        let c = Constraints::default();
        let differ = |a: Scene, b: Scene| {
            render(&a, DEFAULT_SIZE).as_raw() != render(&b, DEFAULT_SIZE).as_raw()
        };
        for index in 0..20 {
            assert!(differ(sample(1, index, &c), sample(2, index, &c)));
            assert!(differ(sample(1, index, &c), sample(1, index + 1, &c)));
        }
    }

    #[test]
    fn every_shape_covers_its_centre_with_its_colour() {
        let bg = [40, 40, 120];
        for shape in Shape::ALL {
            let color = Color::Yellow;
            let img = render(&centred(shape, color, bg), DEFAULT_SIZE);
            let object = img.pixels().filter(|p| p.0 == color.rgb()).count();
            // The object fills a good part of the disc it is drawn in (radius 0.4 * 64).
            let disc = std::f32::consts::PI * (0.4 * 64.0f32).powi(2);
            assert!(
                object as f32 > 0.25 * disc,
                "{shape:?} covers {object} pixels"
            );
            // Probe the centre, or for the ring the middle of its band.
            let probe = if shape == Shape::Ring { 32 + 19 } else { 32 };
            assert_eq!(img.get_pixel(probe, 32).0, color.rgb(), "{shape:?}");
            assert_eq!(img.get_pixel(0, 0).0, bg, "{shape:?} leaks to the corner");
        }
    }

    #[test]
    fn shapes_are_pairwise_distinguishable() {
        let masks: Vec<Vec<bool>> = Shape::ALL.into_iter().map(mask).collect();
        let total = (DEFAULT_SIZE * DEFAULT_SIZE) as f32;
        for i in 0..masks.len() {
            for j in i + 1..masks.len() {
                let diff = masks[i]
                    .iter()
                    .zip(&masks[j])
                    .filter(|(a, b)| a != b)
                    .count();
                let frac = diff as f32 / total;
                assert!(
                    frac > 0.05,
                    "{:?} vs {:?} differ in only {:.1}% of pixels",
                    Shape::ALL[i],
                    Shape::ALL[j],
                    frac * 100.0
                );
            }
        }
    }

    #[test]
    fn rotation_turns_the_shape() {
        let mut scene = centred(Shape::Arrow, Color::White, [0, 0, 0]);
        let upright = render(&scene, DEFAULT_SIZE);
        scene.rotation = std::f32::consts::FRAC_PI_2;
        let turned = render(&scene, DEFAULT_SIZE);
        // The arrow points right unrotated and down after a clockwise quarter turn.
        assert_eq!(upright.get_pixel(52, 32).0, [245, 245, 245]);
        assert_eq!(turned.get_pixel(32, 52).0, [245, 245, 245]);
        assert_eq!(turned.get_pixel(52, 32).0, [0, 0, 0]);
    }

    #[test]
    fn captions_mention_shape_colour_and_background() {
        let c = Constraints {
            kind: ObjectKind::Shapes,
            ..Constraints::default()
        };
        for index in 0..300 {
            let (scene, text) = sample_captioned(3, index, &c);
            let Object::Shape { shape, color } = scene.object else {
                panic!("shape constraints gave {:?}", scene.object);
            };
            for word in [shape.name(), color.name(), scene.background.adjective()] {
                assert!(text.contains(word), "{text:?} lacks {word:?}");
            }
        }
        let fruits = Constraints {
            kind: ObjectKind::Fruits,
            ..Constraints::default()
        };
        for index in 0..100 {
            let (scene, text) = sample_captioned(3, index, &fruits);
            let Object::Fruit(fruit) = scene.object else {
                panic!("fruit constraints gave {:?}", scene.object);
            };
            assert!(text.contains(fruit.name()), "{text:?}");
            assert!(text.contains(scene.background.adjective()), "{text:?}");
        }
    }

    #[test]
    fn articles_agree_with_the_next_word() {
        assert_eq!(article("orange"), "an");
        assert_eq!(article("arrow"), "an");
        assert_eq!(article("apple"), "an");
        assert_eq!(article("big"), "a");
        assert_eq!(article("red"), "a");
        let mut rng = Rng::new(9);
        let mut scene = centred(Shape::Circle, Color::Red, [0, 0, 0]);
        scene.object = Object::Fruit(Fruit::Orange);
        let mut saw_bare = false;
        for _ in 0..50 {
            let text = caption(&scene, &mut rng);
            saw_bare |= text.contains("an orange on") || text.contains("an orange against");
        }
        assert!(saw_bare, "never captioned the fruit without a size word");
        for index in 0..1000 {
            let (_, text) = sample_captioned(11, index, &Constraints::default());
            let words: Vec<&str> = text.split(' ').collect();
            for pair in words.windows(2) {
                let vowel = pair[1].starts_with(['a', 'e', 'i', 'o', 'u']);
                match pair[0] {
                    "a" => assert!(!vowel, "{text:?}"),
                    "an" => assert!(vowel, "{text:?}"),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn orange_fruit_and_orange_colour_differ() {
        let colour = centred(Shape::Circle, Color::Orange, [40, 40, 120]);
        let fruit = Scene {
            object: Object::Fruit(Fruit::Orange),
            ..colour
        };
        let a = render(&colour, DEFAULT_SIZE);
        let b = render(&fruit, DEFAULT_SIZE);
        let diff = a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count();
        assert!(diff > 100, "only {diff} pixels differ");
        // The fruit carries a green leaf; the coloured circle has no green.
        let leafy = |img: &RgbImage| img.pixels().any(|p| p.0 == LEAF);
        assert!(leafy(&b) && !leafy(&a));
    }

    #[test]
    fn backgrounds_contrast_with_objects() {
        let c = Constraints::default();
        for index in 0..2000 {
            let scene = sample(5, index, &c);
            let d = rgb_distance(scene.background_color, scene.object.color().rgb());
            assert!(d >= MIN_CONTRAST, "{scene:?} contrast {d}");
            assert_ne!(scene.background_color, scene.object.color().rgb());
        }
    }

    #[test]
    fn constraints_are_respected() {
        let red_circles = Constraints {
            shape: Some(Shape::Circle),
            color: Some(Color::Red),
            ..Constraints::default()
        };
        let no_red = Constraints {
            exclude_colors: vec![Color::Red],
            ..Constraints::default()
        };
        let lemons = Constraints {
            fruit: Some(Fruit::Lemon),
            ..Constraints::default()
        };
        for index in 0..300 {
            assert_eq!(
                sample(1, index, &red_circles).object,
                Object::Shape {
                    shape: Shape::Circle,
                    color: Color::Red
                }
            );
            assert_ne!(sample(1, index, &no_red).object.color(), Color::Red);
            assert_eq!(
                sample(1, index, &lemons).object,
                Object::Fruit(Fruit::Lemon)
            );
            let scene = sample(1, index, &Constraints::default());
            let (lo, hi) = scene.size.scale_range();
            assert!((lo..hi).contains(&scene.scale));
            let margin = scene.scale * OBJECT_RADIUS;
            assert!(scene.x >= margin && scene.x <= 1.0 - margin);
            assert!(scene.y >= margin && scene.y <= 1.0 - margin);
        }
    }

    #[test]
    fn batch_matches_single_renders() {
        let c = Constraints::default();
        let scenes: Vec<Scene> = (0..64).map(|i| sample(8, i, &c)).collect();
        let batch = render_batch(&scenes, 48);
        for (scene, img) in scenes.iter().zip(&batch) {
            assert_eq!(img.as_raw(), render(scene, 48).as_raw());
            assert_eq!(img.dimensions(), (48, 48));
        }
    }
}
