//! Opening a dataset off the UI thread and filtering its items: the spec for a dropped or
//! picked path, the lower-cased text the filter searches, and the class counts it shows.

use std::path::Path;

use crate::data::dataset::{self, Dataset};

/// An opened dataset with what the filters need, computed off the UI thread; the browser
/// installs it when the background open finishes.
pub(super) struct Loaded {
    /// The dataset itself.
    pub(super) dataset: Dataset,
    /// Lower-cased class name and caption of every item, for the text filter.
    pub(super) haystacks: Vec<String>,
    /// Items of each class, for the class filter.
    pub(super) class_counts: Vec<usize>,
}

/// Opens `spec` and prepares its filter data (background thread); the error names the spec,
/// since it reaches the status bar far from the field that holds it.
pub(super) fn load(spec: &str) -> Result<Loaded, String> {
    let dataset = dataset::open(spec).map_err(|error| {
        let message = error.to_string();
        if message.contains(spec) {
            message
        } else {
            format!("{spec}: {message}")
        }
    })?;
    let mut class_counts = vec![0; dataset.classes.len()];
    let haystacks = dataset
        .items
        .iter()
        .map(|item| {
            if let Some(count) = class_counts.get_mut(item.label) {
                *count += 1;
            }
            let class = dataset.classes.get(item.label).map_or("", String::as_str);
            let caption = item.caption.as_deref().unwrap_or("");
            format!("{class}\n{caption}").to_lowercase()
        })
        .collect();
    Ok(Loaded {
        dataset,
        haystacks,
        class_counts,
    })
}

/// The dataset spec for a dropped path: a folder, or a CSV/JSON-lines manifest; anything else
/// is refused with what would have worked.
pub(super) fn spec_for_path(path: &Path) -> Result<String, String> {
    if path.is_dir() {
        return Ok(format!("folder:{}", path.display()));
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv" | "jsonl" | "json") => Ok(format!("manifest:{}", path.display())),
        _ => Err(format!(
            "{}: drop a folder (one sub-folder of images per class) or a .csv/.jsonl manifest",
            path.display()
        )),
    }
}

/// The items of class `label` (all when `None`) whose class name or caption contains `text`
/// (case-insensitive), in dataset order: what the grid shows before any ranking.
pub(super) fn filter_items(
    dataset: &Dataset,
    haystacks: &[String],
    label: Option<usize>,
    text: &str,
) -> Vec<usize> {
    let needle = text.trim().to_lowercase();
    (0..dataset.items.len())
        .filter(|&i| label.is_none_or(|l| dataset.items[i].label == l))
        .filter(|&i| needle.is_empty() || haystacks.get(i).is_some_and(|h| h.contains(&needle)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colours() -> Loaded {
        load("shapes:colors?seed=3&n=60").unwrap()
    }

    #[test]
    fn loading_prepares_filters_and_names_the_spec_on_error() {
        let loaded = colours();
        assert_eq!(loaded.haystacks.len(), 60);
        assert_eq!(loaded.class_counts.iter().sum::<usize>(), 60);
        let error = load("shapes:nonsense").err().unwrap();
        assert!(error.contains("shapes:nonsense"), "{error}");
        let error = load("folder:/no/such/folder").err().unwrap();
        assert!(error.contains("folder:/no/such/folder"), "{error}");
    }

    #[test]
    fn filters_match_labels_and_captions() {
        let Loaded {
            dataset, haystacks, ..
        } = colours();
        let red = dataset.classes.iter().position(|c| c == "red").unwrap();
        let reds = filter_items(&dataset, &haystacks, Some(red), "");
        assert!(!reds.is_empty());
        assert!(reds.iter().all(|&i| dataset.items[i].label == red));
        let by_text = filter_items(&dataset, &haystacks, None, "  RED ");
        assert!(
            reds.iter().all(|i| by_text.contains(i)),
            "the label matches too"
        );
        assert_eq!(filter_items(&dataset, &haystacks, None, "").len(), 60);
        assert!(filter_items(&dataset, &haystacks, None, "no such words").is_empty());
    }

    #[test]
    fn dropped_paths_become_specs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        assert_eq!(
            spec_for_path(path),
            Ok(format!("folder:{}", path.display()))
        );
        let manifest = path.join("set.JSONL");
        assert_eq!(
            spec_for_path(&manifest),
            Ok(format!("manifest:{}", manifest.display()))
        );
        assert!(spec_for_path(&path.join("cat.png")).is_err());
    }
}
