//! `candor --version` names the commit it was built from (`git describe`), or says it was not
//! built from a git checkout (e.g. from a packaged crate).
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "not built from a git checkout".into());
    println!("cargo:rustc-env=CANDOR_COMMIT={commit}");
    // A new commit or a checkout changes HEAD or the ref it names; the index, a dirty tree.
    for path in [
        "../../.git/HEAD",
        "../../.git/index",
        "../../.git/refs/heads",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
