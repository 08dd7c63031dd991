//! Saving a hand-picked subset of a dataset as a manifest, so a recipe (which names datasets by
//! spec) can use images picked in the app. Shapes scenes have no file, so they are rendered to
//! PNG next to the manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::dataset::{Dataset, ImageSource};

/// The manifest's file name inside a saved subset folder.
pub const MANIFEST: &str = "manifest.csv";

/// Writes the `items` of `dataset` into the new folder `dir` (replacing an older one) as
/// `manifest.csv` (+ rendered PNGs for Shapes scenes) and returns its dataset spec. The folder
/// is assembled under a temporary name and renamed into place.
pub fn save_subset(dataset: &Dataset, items: &[usize], dir: &Path) -> Result<String> {
    crate::atomic::write_folder(dir, true, |staging| write_subset(dataset, items, staging))?;
    Ok(format!("manifest:{}", dir.join(MANIFEST).display()))
}

fn write_subset(dataset: &Dataset, items: &[usize], dir: &Path) -> Result<()> {
    let mut writer = csv::Writer::from_path(dir.join(MANIFEST))?;
    writer.write_record(["path", "label", "caption"])?;
    for &index in items {
        let item = dataset
            .items
            .get(index)
            .with_context(|| format!("{} has no image {index}", dataset.name))?;
        let path: PathBuf = match &item.source {
            ImageSource::File(path) => path
                .canonicalize()
                .with_context(|| format!("cannot find {}", path.display()))?,
            ImageSource::Shapes(_) => {
                let file = format!("{index:06}.png");
                let image = item.source.image()?;
                image
                    .save(dir.join(&file))
                    .with_context(|| format!("cannot write {file} in {}", dir.display()))?;
                PathBuf::from(file)
            }
        };
        writer.write_record([
            path.to_string_lossy().as_ref(),
            &dataset.classes[item.label],
            item.caption.as_deref().unwrap_or(""),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::data::dataset;

    #[test]
    fn a_saved_subset_opens_with_the_same_labels_and_pixels() {
        let data = dataset::open("shapes:fruits?seed=5&n=30").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let picked = [2, 7, 11];
        let spec = save_subset(&data, &picked, &dir.path().join("forget")).unwrap();
        let reopened = dataset::open(&spec).unwrap();
        assert_eq!(reopened.items.len(), 3);
        for (item, &index) in reopened.items.iter().zip(&picked) {
            let original = &data.items[index];
            assert_eq!(reopened.classes[item.label], data.classes[original.label]);
            assert_eq!(item.caption, original.caption);
            assert_eq!(
                item.source.image().unwrap().to_rgb8(),
                original.source.image().unwrap().to_rgb8()
            );
        }
        let again = save_subset(&data, &[1], &dir.path().join("forget")).unwrap();
        assert_eq!(dataset::open(&again).unwrap().items.len(), 1);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no staging folder is left behind");
    }
}
