//! The README's Rust snippets are programs CI builds: each ```rust block of the README
//! is, line for line, the marked regions of one `examples/readme_*.rs` (joined by a
//! blank line, indentation removed). Editing one without the other fails here.

use std::path::Path;

/// The regions between `// README begin` and `// README end`, dedented, joined.
fn marked(source: &str) -> String {
    let mut regions = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in source.lines() {
        match (line.trim(), &mut current) {
            ("// README begin", None) => current = Some(Vec::new()),
            ("// README end", Some(lines)) => {
                let indent = lines
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.len() - l.trim_start().len())
                    .min()
                    .unwrap_or(0);
                let text: Vec<&str> = lines
                    .iter()
                    .map(|l| {
                        if l.trim().is_empty() {
                            ""
                        } else {
                            &l[indent..]
                        }
                    })
                    .collect();
                regions.push(text.join("\n"));
                current = None;
            }
            (_, Some(lines)) => lines.push(line),
            (_, None) => {}
        }
    }
    assert!(current.is_none(), "a README region is not closed");
    regions.join("\n\n")
}

/// The ```rust blocks of the README.
fn rust_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in readme.lines() {
        match (line, &mut current) {
            ("```rust", None) => current = Some(Vec::new()),
            ("```", Some(lines)) => {
                blocks.push(lines.join("\n"));
                current = None;
            }
            (_, Some(lines)) => lines.push(line),
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_rust_snippet_of_the_readme_is_an_example_that_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let blocks = rust_blocks(&readme);
    let names = ["store", "agent", "tools", "responses"];
    assert_eq!(
        blocks.len(),
        names.len(),
        "each README Rust block needs its example"
    );
    for (block, name) in blocks.iter().zip(names) {
        let path = root.join(format!("examples/readme_{name}.rs"));
        let source = std::fs::read_to_string(&path).expect("the example");
        assert_eq!(
            block,
            &marked(&source),
            "README block and {} differ (run the example's regions into the README)",
            path.display()
        );
    }
}
