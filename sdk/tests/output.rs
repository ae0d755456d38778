//! `generate`'s output directory: all or nothing, never a user's file, never the spec, and no
//! stale files from earlier runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};

use meshkit_sdk::{write_owned, GeneratedFile, OutputError, MANIFEST};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshkit-output-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn file(name: &str, contents: &str) -> GeneratedFile {
    GeneratedFile {
        service: name.split(".").next().unwrap().to_string(),
        instance: 0,
        file_name: name.to_string(),
        contents: contents.to_string(),
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_write_leaves_nothing_and_names_the_path() {
    let dir = scratch("partial");
    std::fs::create_dir(dir.join("orders.json")).unwrap();
    let err = write_owned(
        &dir,
        &[file("gateway.json", "{}"), file("orders.json", "{}")],
        &[],
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}: ", dir.join("orders.json").display())),
        "{message}"
    );
    assert_eq!(message.matches("directory").count(), 1, "{message}");
    assert_eq!(
        listing(&dir),
        ["orders.json"],
        "no gateway.json, no temporary files"
    );
}

#[test]
fn the_spec_is_never_overwritten() {
    let dir = scratch("input");
    let spec = dir.join("gateway.json");
    std::fs::write(&spec, "the spec").unwrap();
    let err = write_owned(&dir, &[file("gateway.json", "{}")], &[spec.as_path()]).unwrap_err();
    assert!(
        matches!(err, OutputError::WouldOverwriteInput { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), "the spec");
}

#[test]
fn files_meshkit_did_not_write_are_never_overwritten() {
    let dir = scratch("foreign");
    std::fs::write(dir.join("orders.json"), "mine").unwrap();
    let err = write_owned(&dir, &[file("orders.json", "{}")], &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("was not written by meshkit generate"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("orders.json")).unwrap(),
        "mine"
    );
    // A file that already holds exactly what would be written is adopted.
    std::fs::write(dir.join("orders.json"), "{}").unwrap();
    write_owned(&dir, &[file("orders.json", "{}")], &[]).unwrap();
}

#[test]
fn stale_files_of_earlier_runs_are_removed_and_nothing_else() {
    let dir = scratch("stale");
    std::fs::write(dir.join("notes.txt"), "the user's").unwrap();
    write_owned(
        &dir,
        &[
            file("a.json", "1"),
            file("b.json", "1"),
            file("c.json", "1"),
        ],
        &[],
    )
    .unwrap();
    // c removed from the spec; then the other format.
    let w = write_owned(&dir, &[file("a.json", "2"), file("b.json", "2")], &[]).unwrap();
    assert_eq!(w.removed, [dir.join("c.json")]);
    let w = write_owned(&dir, &[file("a.yaml", "3"), file("b.yaml", "3")], &[]).unwrap();
    assert_eq!(w.removed.len(), 2);
    assert_eq!(listing(&dir), [MANIFEST, "a.yaml", "b.yaml", "notes.txt"]);
    let manifest = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
    assert!(manifest.ends_with("a.yaml\nb.yaml\n"), "{manifest}");
    // A manifest cannot point outside the directory.
    let outside = scratch("outside").join("victim.json");
    std::fs::write(&outside, "keep").unwrap();
    std::fs::write(
        dir.join(MANIFEST),
        format!(
            "{}\n../{}\na.yaml\n",
            outside.display(),
            "outside/victim.json"
        ),
    )
    .unwrap();
    write_owned(&dir, &[file("a.yaml", "4")], &[]).unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
}
