//! Writing files and folders so that readers see either the old state or the complete new one:
//! everything goes to a hidden sibling first and is renamed into place at the end. A failed or
//! interrupted write leaves the previous state untouched.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The hidden sibling `target` is assembled under before it is renamed into place.
fn staging_for(target: &Path) -> Result<PathBuf> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = target
        .file_name()
        .with_context(|| format!("{}: not a file or folder name", target.display()))?;
    Ok(parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Where `path` is, with links and `..` resolved, whether it exists yet or not (a missing
/// path is resolved through its nearest existing ancestor).
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => resolved(parent).join(name),
        _ => std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Refuses an output `out` that is one of `inputs`, lies inside one, or would replace a folder
/// holding one: a run never writes over what it reads.
pub fn refuse_inputs<'a>(out: &Path, inputs: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    let target = resolved(out);
    for input in inputs {
        let input_real = resolved(input);
        if target == input_real
            || target.starts_with(&input_real)
            || input_real.starts_with(&target)
        {
            anyhow::bail!(
                "{}: this would write over the input {}; choose another output",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Checks, before any long work, that `target` can be written: its folder can be created and
/// takes a file. A run that could not save its result should fail at once, not at the end.
pub fn check_writable(target: &Path) -> Result<()> {
    let probe = staging_for(target)?;
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "{}: cannot write here (is the folder writable?)",
                target.display()
            )
        })
}

/// Writes `bytes` to the file `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let staging = staging_for(path)?;
    let result = fs::write(&staging, bytes).and_then(|()| fs::rename(&staging, path));
    if result.is_err() {
        let _ = fs::remove_file(&staging);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Creates the folder `dir` with what `fill` writes into the (empty) folder it is given. An
/// existing `dir` is replaced only when `replace` is set; otherwise it must be empty.
pub fn write_folder(
    dir: &Path,
    replace: bool,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let staging = staging_for(dir)?;
    let result = (|| -> Result<()> {
        fs::create_dir_all(&staging)?;
        fill(&staging)?;
        if dir.exists() {
            if replace {
                fs::remove_dir_all(dir)?;
            } else {
                fs::remove_dir(dir)?;
            }
        }
        fs::rename(&staging, dir)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result.with_context(|| format!("cannot write {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_folder_write_leaves_the_old_folder_and_no_staging() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        write_folder(&dir, true, |d| Ok(fs::write(d.join("a"), "1")?)).unwrap();
        let failed = write_folder(&dir, true, |d| {
            fs::write(d.join("a"), "2")?;
            anyhow::bail!("disk full")
        });
        assert!(format!("{:#}", failed.unwrap_err()).contains("out"));
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
        write_file(&root.path().join("f"), b"x").unwrap();
        assert_eq!(fs::read(root.path().join("f")).unwrap(), b"x");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 2);
    }
}
