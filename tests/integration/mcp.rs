//! `agentstore mcp` driven by a real MCP client that is not ours: the official Python
//! SDK (`mcp` from PyPI), in `tests/mcp/test_mcp.py`, run with pytest against the
//! binary this build made. Python comes from `AGENTSTORE_TEST_PYTHON`, or the virtual
//! environment the README's test command makes (`target/pyenv`); without one that can
//! import `mcp` and `pytest`, the test prints why it skips, unless
//! `AGENTSTORE_REQUIRE_PYTHON` is set (as the test command sets it), which makes that
//! a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Python that has the MCP SDK and pytest, or why there is none.
fn python() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidate = match std::env::var_os("AGENTSTORE_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => root.join("target/pyenv/bin/python"),
    };
    if !candidate.exists() {
        return Err(format!(
            "no Python at {} (scripts/test.sh makes it; or set AGENTSTORE_TEST_PYTHON)",
            candidate.display()
        ));
    }
    let probe = Command::new(&candidate)
        .args(["-c", "import mcp, pytest, httpx2"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", candidate.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} cannot import mcp, pytest and httpx2 (pip install -r python/requirements-test.txt)",
            candidate.display()
        ));
    }
    Ok(candidate)
}

#[test]
fn the_official_python_mcp_client_drives_agentstore_mcp() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            crate::common::skip("AGENTSTORE_REQUIRE_PYTHON", "the MCP client suite", &why);
            return;
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A PostgreSQL server too, when one can be had here (required by the test command).
    let server = crate::postgres::server();
    let mut pytest = Command::new(python);
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/mcp"])
        .current_dir(root)
        .env("AGENTSTORE_BIN", env!("CARGO_BIN_EXE_agentstore"));
    if let Some(server) = &server {
        pytest.env(
            "AGENTSTORE_MCP_POSTGRES",
            format!("{}?schema=mcp", server.url()),
        );
    }
    let out = pytest.output().expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the MCP client suite failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "a test was skipped: {stdout}");
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
}
