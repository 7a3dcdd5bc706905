//! `candor --version` names the commit it was built from (`git describe`), or says it was not
//! built from a git checkout (e.g. from a packaged crate). Release builds lay out the functions
//! a running daemon uses together (`hot-symbols.txt`).
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
    hot_symbols_first();
}

/// Release builds linked by LLD (Rust's default linker for x86_64 Linux since 1.90): the
/// functions a running daemon uses (`hot-symbols.txt`, made by bench/hot_symbols.py) are
/// placed first and together. The kernel maps a binary's code in 64 KiB windows around each
/// page it touches; scattered over the whole binary, the steady state's ~1,100 functions kept
/// ~2.7 MiB of it resident, together ~1 MiB (bench/results/memory.txt). A name the build no
/// longer has is skipped. Another linker, or CANDOR_NO_SYMBOL_ORDER=1: no ordering.
fn hot_symbols_first() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=CANDOR_NO_SYMBOL_ORDER");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = ["linker", "fuse-ld", "link-self-contained"]
        .iter()
        .any(|f| flags.contains(f));
    let rustc_minor = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            v.split(['.', ' '])
                .nth(2)
                .and_then(|m| m.parse::<u32>().ok())
        })
        .unwrap_or(0);
    if var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || other_linker
        || rustc_minor < 90
        || var("CANDOR_NO_SYMBOL_ORDER") == "1"
    {
        return;
    }
    let file = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("hot-symbols.txt");
    if file.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            file.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
