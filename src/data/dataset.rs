//! Labelled image collections addressed by a one-line spec, used by every command:
//! `shapes:<subset>[?seed=N&n=M]`, `folder:PATH` (one sub-folder per class) and
//! `manifest:FILE` (CSV or JSONL with `path`, `label` and optional `caption`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use image::DynamicImage;

use super::shapes::{self, Scene};
use crate::clip::preprocess::{ImageError, decode};

/// Where one item's pixels come from.
#[derive(Clone, Debug)]
pub enum ImageSource {
    /// An image file on disk.
    File(PathBuf),
    /// A Shapes scene, rendered on demand at the world's native resolution.
    Shapes(Scene),
}

impl ImageSource {
    /// Decodes or renders the image.
    pub fn image(&self) -> Result<DynamicImage, ImageError> {
        match self {
            Self::File(path) => decode(path),
            Self::Shapes(scene) => Ok(DynamicImage::ImageRgb8(shapes::render(
                scene,
                shapes::DEFAULT_SIZE,
            ))),
        }
    }

    /// A short name for messages and reports.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Shapes(_) => "shapes scene".to_string(),
        }
    }
}

/// One labelled image.
#[derive(Clone, Debug)]
pub struct Item {
    /// Its pixels.
    pub source: ImageSource,
    /// Index into [`Dataset::classes`].
    pub label: usize,
    /// A caption, when the source has one.
    pub caption: Option<String>,
}

/// A classification dataset with the prompts that name its classes.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The spec it was built from.
    pub name: String,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Prompt templates with `{}` for the class name.
    pub templates: Vec<String>,
    /// The items.
    pub items: Vec<Item>,
}

impl Dataset {
    /// The same pictures classified among `head`'s classes and prompts: a saved subset knows
    /// only the classes it holds (a set of stars has one class, which every picture matches),
    /// but what counts is the answer among all the head's classes. Errors name a class the
    /// head does not have.
    pub fn in_classes_of(self, head: &Dataset) -> Result<Dataset, String> {
        let map = self
            .classes
            .iter()
            .map(|class| {
                head.classes.iter().position(|c| c == class).ok_or_else(|| {
                    format!(
                        "{}: class '{class}' is not a class of {} (its classes: {})",
                        self.name,
                        head.name,
                        head.classes.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dataset {
            name: self.name,
            classes: head.classes.clone(),
            templates: head.templates.clone(),
            items: self
                .items
                .into_iter()
                .map(|item| Item {
                    label: map[item.label],
                    ..item
                })
                .collect(),
        })
    }
}

/// Why a dataset spec could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The spec itself is malformed.
    #[error("dataset spec '{spec}': {problem}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        problem: String,
    },
    /// A file or folder the spec names is unusable.
    #[error("{}: {problem}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

const SHAPES_SUBSETS: &str = "shapes, colors, fruits, color-shapes, backgrounds";
const DEFAULT_TEMPLATES: [&str; 1] = ["a photo of a {}."];

/// Opens a dataset from its spec; specs joined by ` | ` are one dataset with the pictures
/// of each in turn (they must name the same classes), e.g. a subgroup's siblings together
/// with everything else to keep.
pub fn open(spec: &str) -> Result<Dataset, DatasetError> {
    if spec.contains(" | ") {
        return open_union(spec);
    }
    let fail = |problem: String| DatasetError::Spec {
        spec: spec.to_string(),
        problem,
    };
    let (scheme, rest) = spec
        .split_once(':')
        .ok_or_else(|| fail("expected shapes:<subset>, folder:PATH or manifest:FILE".into()))?;
    if matches!(scheme, "folder" | "manifest") && rest.is_empty() {
        return Err(fail(format!("{scheme}: needs a path after the colon")));
    }
    let dataset = match scheme {
        "shapes" => open_shapes(spec, rest),
        "folder" => open_folder(spec, Path::new(rest)),
        "manifest" => open_manifest(spec, Path::new(rest)),
        other => Err(fail(format!(
            "unknown source '{other}' (use shapes:, folder: or manifest:)"
        ))),
    }?;
    // Accuracy over no pictures is not a number: refuse here rather than report 0.
    if dataset.items.is_empty() {
        return Err(fail("holds no pictures".into()));
    }
    Ok(dataset)
}

fn open_union(spec: &str) -> Result<Dataset, DatasetError> {
    let mut parts = spec.split(" | ").map(str::trim);
    let mut union = open(parts.next().unwrap_or_default())?;
    for part in parts {
        let next = open(part)?;
        if next.classes != union.classes {
            return Err(DatasetError::Spec {
                spec: spec.to_string(),
                problem: format!(
                    "'{part}' names other classes than '{}'; joined specs must share their classes",
                    union.name
                ),
            });
        }
        union.items.extend(next.items);
    }
    union.name = spec.to_string();
    Ok(union)
}

fn open_shapes(spec: &str, rest: &str) -> Result<Dataset, DatasetError> {
    let fail = |problem: String| DatasetError::Spec {
        spec: spec.to_string(),
        problem,
    };
    let (subset, query) = rest.split_once('?').unwrap_or((rest, ""));
    let subset = ShapesSubset::parse(subset).ok_or_else(|| {
        fail(format!(
            "unknown Shapes subset '{subset}' (available: {SHAPES_SUBSETS})"
        ))
    })?;
    let (mut seed, mut count) = (0u64, 500u64);
    let mut constraints = subset.constraints();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| fail(format!("'{pair}' is not key=value")))?;
        if let Some(filter) = SceneFilter::parse(key) {
            if subset == ShapesSubset::Fruits {
                return Err(fail(format!(
                    "'{key}' picks shapes, and the fruits subset has none"
                )));
            }
            filter
                .apply(value, &mut constraints)
                .map_err(|problem| fail(format!("'{key}': {problem}")))?;
            continue;
        }
        let (slot, min, max) = match key {
            "seed" => (&mut seed, 0, u64::MAX),
            "n" => (&mut count, 1, crate::limits::MAX_SHAPES_ITEMS),
            other => {
                return Err(fail(format!(
                    "unknown parameter '{other}' (use seed, n, {SCENE_FILTERS})"
                )));
            }
        };
        *slot = value
            .parse()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                fail(format!(
                    "'{key}' must be a whole number from {min} to {max}, got '{value}'"
                ))
            })?;
    }
    let shapes_left: Vec<shapes::Shape> = shapes::Shape::ALL
        .into_iter()
        .filter(|s| {
            constraints.shape.is_none_or(|x| x == *s) && !constraints.exclude_shapes.contains(s)
        })
        .collect();
    let colors_left: Vec<shapes::Color> = shapes::Color::ALL
        .into_iter()
        .filter(|c| {
            constraints.color.is_none_or(|x| x == *c) && !constraints.exclude_colors.contains(c)
        })
        .collect();
    let pair_left = shapes_left.iter().any(|s| {
        colors_left
            .iter()
            .any(|c| !constraints.exclude_pairs.contains(&(*c, *s)))
    });
    if !pair_left {
        return Err(fail(
            "its filters leave no shape or no colour to draw".into(),
        ));
    }
    let items = (0..count)
        .map(|index| {
            let (scene, caption) = shapes::sample_captioned(seed, index, &constraints);
            Item {
                label: subset.label(&scene),
                source: ImageSource::Shapes(scene),
                caption: Some(caption),
            }
        })
        .collect();
    Ok(Dataset {
        name: spec.to_string(),
        classes: subset.classes(),
        templates: subset.templates(),
        items,
    })
}

const SCENE_FILTERS: &str = "shape, color, not-shape, not-color, except";

/// A filter on the pictures of a Shapes dataset, for subgroups and their siblings:
/// `shape=star&color=red` (only red stars), `shape=star&not-color=red` (every other star),
/// `color=red&not-shape=star,heart` (red things but stars and hearts), `except=red star`
/// (everything but red stars: a subgroup's complement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SceneFilter {
    Shape,
    Color,
    NotShape,
    NotColor,
    Except,
}

impl SceneFilter {
    fn parse(key: &str) -> Option<Self> {
        Some(match key {
            "shape" => Self::Shape,
            "color" | "colour" => Self::Color,
            "not-shape" => Self::NotShape,
            "not-color" | "not-colour" => Self::NotColor,
            "except" => Self::Except,
            _ => return None,
        })
    }

    /// Narrows `constraints` by `value` (one name, or a comma-separated list for `not-`).
    fn apply(self, value: &str, constraints: &mut shapes::Constraints) -> Result<(), String> {
        fn find<T: Copy>(
            all: &[T],
            name: impl Fn(T) -> &'static str,
            given: &str,
        ) -> Result<T, String> {
            all.iter()
                .copied()
                .find(|&item| name(item) == given)
                .ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|&item| name(item)).collect();
                    format!("unknown name '{given}' (available: {})", names.join(", "))
                })
        }
        let shape = |given| find(&shapes::Shape::ALL, shapes::Shape::name, given);
        let color = |given| find(&shapes::Color::ALL, shapes::Color::name, given);
        let list = value.split(',').map(str::trim);
        match self {
            Self::Shape => constraints.shape = Some(shape(value)?),
            Self::Color => constraints.color = Some(color(value)?),
            Self::NotShape => {
                for name in list {
                    constraints.exclude_shapes.push(shape(name)?);
                }
            }
            Self::NotColor => {
                for name in list {
                    constraints.exclude_colors.push(color(name)?);
                }
            }
            Self::Except => {
                for pair in list {
                    let (c, s) = pair.split_once(' ').ok_or_else(|| {
                        format!("'{pair}' is not a colour and a shape, e.g. 'red star'")
                    })?;
                    constraints
                        .exclude_pairs
                        .push((color(c.trim())?, shape(s.trim())?));
                }
            }
        }
        Ok(())
    }
}

/// The evaluation datasets that live inside the Shapes world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapesSubset {
    /// Which of the 10 shapes.
    Shapes,
    /// Which of the 10 colours a shape has.
    Colors,
    /// Which of the 5 fruits.
    Fruits,
    /// Colour and shape together: 100 subgroups.
    ColorShapes,
    /// Which of the 4 backgrounds, whatever the object.
    Backgrounds,
}

impl ShapesSubset {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "shapes" => Self::Shapes,
            "colors" | "colours" => Self::Colors,
            "fruits" => Self::Fruits,
            "color-shapes" | "colour-shapes" => Self::ColorShapes,
            "backgrounds" => Self::Backgrounds,
            _ => return None,
        })
    }

    fn constraints(self) -> shapes::Constraints {
        let kind = match self {
            Self::Fruits => shapes::ObjectKind::Fruits,
            Self::Backgrounds => shapes::ObjectKind::Any,
            _ => shapes::ObjectKind::Shapes,
        };
        shapes::Constraints {
            kind,
            ..Default::default()
        }
    }

    fn classes(self) -> Vec<String> {
        let names = |it: &mut dyn Iterator<Item = &'static str>| it.map(String::from).collect();
        match self {
            Self::Shapes => names(&mut shapes::Shape::ALL.iter().map(|s| s.name())),
            Self::Colors => names(&mut shapes::Color::ALL.iter().map(|c| c.name())),
            Self::Fruits => names(&mut shapes::Fruit::ALL.iter().map(|f| f.name())),
            Self::Backgrounds => names(&mut shapes::Background::ALL.iter().map(|b| b.adjective())),
            Self::ColorShapes => shapes::Color::ALL
                .iter()
                .flat_map(|c| {
                    shapes::Shape::ALL
                        .iter()
                        .map(move |s| format!("{} {}", c.name(), s.name()))
                })
                .collect(),
        }
    }

    fn templates(self) -> Vec<String> {
        let templates: &[&str] = match self {
            Self::Shapes | Self::ColorShapes | Self::Fruits => &[
                "a photo of a {}.",
                "a drawing of a {}.",
                "a {} on a background.",
            ],
            Self::Colors => &[
                "a photo of a {} shape.",
                "a {} object.",
                "something coloured {}.",
            ],
            Self::Backgrounds => &[
                "a photo of something on a {} background.",
                "a {} background.",
            ],
        };
        templates.iter().map(|t| t.to_string()).collect()
    }

    fn label(self, scene: &Scene) -> usize {
        match (self, scene.object) {
            (Self::Shapes, shapes::Object::Shape { shape, .. }) => {
                index_of(&shapes::Shape::ALL, shape)
            }
            (Self::Colors, shapes::Object::Shape { color, .. }) => {
                index_of(&shapes::Color::ALL, color)
            }
            (Self::ColorShapes, shapes::Object::Shape { shape, color }) => {
                index_of(&shapes::Color::ALL, color) * shapes::Shape::ALL.len()
                    + index_of(&shapes::Shape::ALL, shape)
            }
            (Self::Fruits, shapes::Object::Fruit(fruit)) => index_of(&shapes::Fruit::ALL, fruit),
            (Self::Backgrounds, _) => index_of(&shapes::Background::ALL, scene.background),
            _ => unreachable!("the subset's constraints only produce matching objects"),
        }
    }
}

/// Where `value` stands in one of the world's fixed vocabularies.
fn index_of<T: PartialEq>(all: &[T], value: T) -> usize {
    all.iter()
        .position(|v| *v == value)
        .expect("every value is in its vocabulary")
}

const IMAGE_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff", "ppm",
];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DatasetError::File {
            path: dir.to_path_buf(),
            problem: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// `folder:PATH`: every sub-folder is a class (sorted by name), every image inside an item.
fn open_folder(spec: &str, dir: &Path) -> Result<Dataset, DatasetError> {
    let mut classes = Vec::new();
    let mut items = Vec::new();
    for class_dir in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let label = classes.len();
        classes.push(
            class_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        for file in sorted_entries(&class_dir)?
            .into_iter()
            .filter(|p| is_image(p))
        {
            crate::limits::check_regular_file(&file).map_err(|problem| DatasetError::File {
                path: file.clone(),
                problem,
            })?;
            items.push(Item {
                source: ImageSource::File(file),
                label,
                caption: None,
            });
        }
    }
    if classes.is_empty() {
        return Err(DatasetError::File {
            path: dir.to_path_buf(),
            problem: "no class sub-folders (expected one folder of images per class)".into(),
        });
    }
    Ok(Dataset {
        name: spec.to_string(),
        classes,
        templates: DEFAULT_TEMPLATES.iter().map(|t| t.to_string()).collect(),
        items,
    })
}

/// `manifest:FILE`: CSV with a header, or JSON lines, each row naming `path`, `label` and
/// optionally `caption`; relative paths are relative to the manifest's folder.
fn open_manifest(spec: &str, file: &Path) -> Result<Dataset, DatasetError> {
    let fail = |problem: String| DatasetError::File {
        path: file.to_path_buf(),
        problem,
    };
    let text = crate::limits::read_text(file).map_err(|e| fail(e.to_string()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let is_jsonl = file
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let rows: Vec<BTreeMap<String, String>> = if is_jsonl {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                let value: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| fail(format!("line {}: not valid JSON ({e})", n + 1)))?;
                let object = value
                    .as_object()
                    .ok_or_else(|| fail(format!("line {}: expected a JSON object", n + 1)))?;
                Ok(object
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), String::from),
                        )
                    })
                    .collect())
            })
            .collect::<Result<_, _>>()?
    } else {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        reader
            .deserialize::<BTreeMap<String, String>>()
            .enumerate()
            .map(|(n, row)| row.map_err(|e| fail(format!("row {}: {e}", n + 1))))
            .collect::<Result<_, _>>()?
    };
    let mut classes: Vec<String> = Vec::new();
    let mut items = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let field = |key: &str| {
            row.get(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| fail(format!("row {}: no '{key}'", n + 1)))
        };
        let label_name = field("label")?;
        let label = match classes.iter().position(|c| c == label_name) {
            Some(label) => label,
            None => {
                classes.push(label_name.clone());
                classes.len() - 1
            }
        };
        items.push(Item {
            source: ImageSource::File(base.join(field("path")?)),
            label,
            caption: row.get("caption").cloned(),
        });
    }
    if items.is_empty() {
        return Err(fail("the manifest lists no images".into()));
    }
    Ok(Dataset {
        name: spec.to_string(),
        classes,
        templates: DEFAULT_TEMPLATES.iter().map(|t| t.to_string()).collect(),
        items,
    })
}
