//! Broken model files give clear diagnostics with line and column, snapshot-tested.

use std::path::Path;

use toolkit::{diagnostic, pipeline};

fn diagnostic_for(file: &Path) -> String {
    // Load by the path relative to the crate (tests run there), so the rendered text, and
    // where miette wraps it, does not depend on where the checkout lives.
    let file = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(file);
    let loaded = pipeline::load(file);
    let error = match loaded {
        Err(e) => e,
        Ok(model) => pipeline::check(&model).expect_err("a broken file must not check"),
    };
    diagnostic::render(&error, false)
}

#[test]
fn broken_model_files_are_reported_with_line_and_column() {
    insta::glob!("bad/*.lra", |path| {
        let text = diagnostic_for(path);
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        // Every message names the file, a line and a column.
        assert!(text.contains(&format!("{name}.lra:")), "{text}");
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false, snapshot_suffix => ""}, {
            insta::assert_snapshot!(format!("diagnostic__{name}"), text);
        });
    });
}

#[test]
fn several_errors_are_reported_at_once() {
    let text = diagnostic_for(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad/unknown_name.lra"));
    assert!(text.contains("unknown name `alpa`") && text.contains("unknown name `q`"), "{text}");
    assert!(text.contains("did you mean `alpha`?"), "{text}");
}
