//! `SHA256SUMS`: the digest of every file of a result folder, in the format of coreutils'
//! `sha256sum`, so that a third party can check a result with `sha256sum -c SHA256SUMS` and no
//! Lethe. `metrics.json` ties the numbers to the input checkpoint and recipe; this file ties
//! them to the exact files handed over.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::eval::metrics::hash_file;

/// The manifest's file name, at the top of the folder it covers.
pub const SHA256SUMS: &str = "SHA256SUMS";

/// Writes `dir/SHA256SUMS` with one line per regular file below `dir` (sub-folders included,
/// the manifest itself left out): the hex digest, two spaces, the path relative to `dir` with
/// `/` separators, sorted by path. `known` holds digests already computed (as [`digests`]
/// gives them) of files unchanged since: those are not read again, which spares a second pass
/// over a checkpoint of gigabytes.
pub fn write_sha256sums(dir: &Path, known: &[(String, String)]) -> io::Result<()> {
    let mut text = String::new();
    for path in files_below(dir)? {
        let name = slash_path(&path);
        let digest = match known.iter().find(|(known_name, _)| *known_name == name) {
            Some((_, digest)) => digest.clone(),
            None => hash_file(&dir.join(&path))?,
        };
        text.push_str(&format!("{digest}  {name}\n"));
    }
    fs::write(dir.join(SHA256SUMS), text)
}

/// (path relative to `dir` with `/` separators, SHA-256 in hex) of every regular file below
/// `dir` but the manifest, sorted by path.
pub fn digests(dir: &Path) -> io::Result<Vec<(String, String)>> {
    files_below(dir)?
        .into_iter()
        .map(|path| Ok((slash_path(&path), hash_file(&dir.join(&path))?)))
        .collect()
}

/// The files of `dir/SHA256SUMS` whose digest no longer matches or that are missing, and the
/// files present but not listed; empty when the folder is as written.
pub fn check_sha256sums(dir: &Path) -> io::Result<Vec<String>> {
    let manifest = fs::read_to_string(dir.join(SHA256SUMS))?;
    let mut listed = Vec::new();
    let mut problems = Vec::new();
    for line in manifest.lines() {
        let Some((digest, name)) = line.split_once("  ") else {
            problems.push(format!("{SHA256SUMS}: malformed line {line:?}"));
            continue;
        };
        listed.push(name.to_string());
        match hash_file(&dir.join(name)) {
            Ok(actual) if actual == digest => {}
            Ok(_) => problems.push(format!("{name}: changed")),
            Err(_) => problems.push(format!("{name}: missing")),
        }
    }
    for path in files_below(dir)? {
        let name = slash_path(&path);
        if !listed.contains(&name) {
            problems.push(format!("{name}: not listed"));
        }
    }
    Ok(problems)
}

/// Every regular file below `dir` but the manifest, as paths relative to `dir`, sorted.
fn files_below(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path != Path::new(SHA256SUMS) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("metrics.json"), "{}").unwrap();
        fs::create_dir_all(dir.path().join("concepts/01-red")).unwrap();
        fs::write(dir.path().join("concepts/01-red/report.md"), "# red\n").unwrap();
        dir
    }

    #[test]
    fn lists_every_file_below_with_sha256sums_digests() {
        let dir = folder();
        write_sha256sums(dir.path(), &[]).unwrap();
        let text = fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        // Digests of "# red\n" and "{}", as `sha256sum` prints them.
        assert_eq!(
            text,
            "f71beaa928395aa494ef013fece965bcf34c912c3e63d24bb64c9ef3836c9dcd  concepts/01-red/report.md\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a  metrics.json\n"
        );
        assert!(check_sha256sums(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn known_digests_are_written_as_given_and_the_other_files_are_read() {
        let dir = folder();
        let known = [("metrics.json".to_string(), "ab".repeat(32))];
        write_sha256sums(dir.path(), &known).unwrap();
        let text = fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        assert!(text.contains(&format!("{}  metrics.json\n", "ab".repeat(32))));
        assert!(text.starts_with("f71beaa928395aa494ef013fece965bcf34c912c3e63d24bb64c9ef3836c9dcd  concepts/01-red/report.md\n"));
        assert_eq!(
            check_sha256sums(dir.path()).unwrap(),
            ["metrics.json: changed"]
        );
    }

    #[test]
    fn a_changed_missing_or_added_file_is_named() {
        let dir = folder();
        write_sha256sums(dir.path(), &[]).unwrap();
        fs::write(dir.path().join("metrics.json"), "{\"accuracy\": 1}").unwrap();
        fs::remove_file(dir.path().join("concepts/01-red/report.md")).unwrap();
        fs::write(dir.path().join("extra.txt"), "x").unwrap();
        assert_eq!(
            check_sha256sums(dir.path()).unwrap(),
            [
                "concepts/01-red/report.md: missing",
                "metrics.json: changed",
                "extra.txt: not listed"
            ]
        );
    }
}
