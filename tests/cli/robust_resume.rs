//! Checkpoint trust (issue 21, problem 2): `train --resume` of a crafted
//! checkpoint cannot write, replace, delete or read a file outside its run
//! directory. Outputs are plain names resolved beside the checkpoint (a moved
//! run directory resumes where it now is), stored `--force` / output paths are
//! refused, a stored data file must be confirmed with `--data`, and a finished
//! resume deletes only the checkpoint it resumed.

use curvature::checkpoint::{load_checkpoint, save_checkpoint};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_curvature");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn curvature(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A small two-class CSV (target last) of 200 rows.
fn write_csv(path: &Path) {
    let mut s = String::from("a,b,label\n");
    for i in 0..200 {
        let (a, b) = ((i % 17) as f32 / 17.0, (i % 5) as f32 / 5.0);
        let label = usize::from(a + b > 0.9);
        s.push_str(&format!("{a},{b},{label}\n"));
    }
    std::fs::write(path, s).unwrap();
}

/// `root/data.csv` and a run in `root/run` interrupted (by the test hook)
/// inside epoch 1 of 3: its checkpoint.
fn interrupted_run(root: &Path) -> PathBuf {
    write_csv(&root.join("data.csv"));
    let out = Command::new(BIN)
        .args([
            "train",
            "--data",
            "data.csv",
            "--device",
            "cpu",
            "--optimizer",
            "momentum",
            "--epochs",
            "3",
            "--quiet",
            "--run-dir",
            "run",
        ])
        .env("CURVATURE_TEST_INTERRUPT_AFTER", "3")
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let checkpoint = root.join("run/checkpoint.safetensors");
    assert!(checkpoint.is_file());
    checkpoint
}

/// Every file under `dir` (but `skip`) with its contents.
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p == skip {
            continue;
        }
        if p.is_dir() {
            files.extend(snapshot(&p, skip));
        } else {
            files.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    files
}

/// A copy of `original` in `run_dir` named `name` with `edit` applied to its run entries.
fn crafted(
    original: &Path,
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, String>),
) -> PathBuf {
    let mut c = load_checkpoint(original).unwrap();
    edit(&mut c.run);
    let path = original.with_file_name(name);
    save_checkpoint(&path, &c).unwrap();
    path
}

/// The stored argument list with `f` applied.
fn edit_args(run: &mut BTreeMap<String, String>, f: impl FnOnce(&mut Vec<String>)) {
    let mut args: Vec<String> = serde_json::from_str(&run["args"]).unwrap();
    f(&mut args);
    run.insert("args".into(), serde_json::Value::from(args).to_string());
}

#[test]
fn crafted_checkpoints_cannot_touch_files_outside_their_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let checkpoint = interrupted_run(root);
    let run_dir = root.join("run");
    let victim = root.join("victim.safetensors");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::write(root.join("victim.json"), b"precious too").unwrap();
    let victim_abs = victim.display().to_string();
    type Edit = Box<dyn FnOnce(&mut BTreeMap<String, String>)>;
    let v = victim_abs.clone();
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "absolute model path, --force stored",
            Box::new(move |run| {
                run.insert("model".into(), v);
                edit_args(run, |a| a.push("--force".into()));
            }),
            "not a plain file name",
        ),
        (
            "model path with ..",
            Box::new(|run| {
                run.insert("model".into(), "../victim.safetensors".into());
            }),
            "not a plain file name",
        ),
        (
            "history path with ..",
            Box::new(|run| {
                run.insert("history".into(), "../victim.json".into());
            }),
            "not a plain file name",
        ),
        (
            "picture in a sub-folder",
            Box::new(|run| {
                run.insert("plot".into(), "sub/../../x.png".into());
            }),
            "not a plain file name",
        ),
        (
            "--force in the stored arguments",
            Box::new(|run| edit_args(run, |a| a.push("--force".into()))),
            "`--force`, which a checkpoint may not set",
        ),
        (
            "--out in the stored arguments",
            Box::new(move |run| edit_args(run, |a| a.push(format!("--out={victim_abs}")))),
            "which a checkpoint may not set",
        ),
        (
            "--run-dir in the stored arguments",
            Box::new(|run| edit_args(run, |a| a.push("--run-dir=..".into()))),
            "which a checkpoint may not set",
        ),
        (
            "a data file the user did not name",
            Box::new(|run| {
                edit_args(run, |a| {
                    a.retain(|w| !w.starts_with("--data="));
                    a.push("--data=/etc/passwd".into());
                })
            }),
            "is not the data this run was trained on (/etc/passwd)",
        ),
    ];
    let before = snapshot(root, &run_dir);
    let checkpoint_before = std::fs::read(&checkpoint).unwrap();
    for (i, (what, edit, expected)) in cases.into_iter().enumerate() {
        let file = crafted(&checkpoint, &format!("crafted{i}.safetensors"), edit);
        let f = file.display().to_string();
        let out = curvature(&["train", "--resume", &f, "--data", "data.csv"], root);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.contains(expected),
            "{what}: `{expected}` missing: {err}"
        );
        assert_eq!(
            snapshot(root, &run_dir),
            before,
            "{what}: a file outside changed"
        );
        assert!(file.is_file(), "{what}: the refused checkpoint was removed");
        assert!(
            !run_dir.join("model.safetensors").exists(),
            "{what}: a model was written"
        );
    }
    assert_eq!(std::fs::read(&checkpoint).unwrap(), checkpoint_before);
    // A stored data file is read only when --data names it again.
    let f = checkpoint.display().to_string();
    let out = curvature(&["train", "--resume", &f], root);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("give `--data"), "{err}");
    assert!(err.contains("to confirm it"), "{err}");
    assert_eq!(snapshot(root, &run_dir), before);
}

#[test]
fn a_moved_run_directory_resumes_where_it_now_is_and_deletes_only_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let checkpoint = interrupted_run(root);
    // A checkpoint naming another file as itself: that file is not deleted.
    let victim = root.join("victim.safetensors");
    std::fs::write(&victim, b"precious").unwrap();
    let v = victim.display().to_string();
    crafted(&checkpoint, "checkpoint.safetensors", |run| {
        run.insert("checkpoint".into(), v);
    });
    std::fs::rename(root.join("run"), root.join("moved")).unwrap();
    let moved = root.join("moved");
    let before = snapshot(root, &moved);
    let data = root.join("data.csv").display().to_string();
    let ck = moved.join("checkpoint.safetensors").display().to_string();
    // From another directory, naming the data by another (absolute) path.
    let out = curvature(&["train", "--resume", &ck, "--data", &data], &moved);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in ["model.safetensors", "history.json", "curves.png"] {
        assert!(
            moved.join(f).is_file(),
            "{f} not written in the moved directory"
        );
    }
    assert!(!root.join("run").exists(), "the old location was written");
    assert!(
        !moved.join("checkpoint.safetensors").exists(),
        "the resumed checkpoint is superseded"
    );
    assert_eq!(snapshot(root, &moved), before, "a file outside changed");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}
