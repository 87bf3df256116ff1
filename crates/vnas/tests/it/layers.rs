//! The layers as ARCHITECTURE.md draws them: the daemon (`src/node/`) and
//! the operations (`src/ops/`) import nothing from the API (`src/api/`);
//! the API, the console and the rebalancer call the operations.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Lines of the modules under `src/<layer>` that name the API module.
fn api_imports(layer: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer);
    let mut files = Vec::new();
    sources(&dir, &mut files);
    assert!(!files.is_empty(), "no sources under {}", dir.display());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains("crate::api") || code.contains("super::api") || code.contains("crate::{api") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_daemon_and_the_operations_import_nothing_from_the_api() {
    for layer in ["node", "ops"] {
        let found = api_imports(layer);
        assert!(found.is_empty(), "src/{layer} imports from src/api:\n{}", found.join("\n"));
    }
}
