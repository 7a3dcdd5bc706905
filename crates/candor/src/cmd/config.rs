//! The commands about a config: check it, have the daemon re-read it, export it for
//! another supervisor; and the CLI's own completions and man pages.

use crate::cli::{Cli, ExportTarget};
use crate::client::Client;
use crate::cmd::{fail, print_json};
use crate::{export, FAILED, OK, USAGE};

/// `candor check`: the config's services, or every error with its file:line:col.
pub fn check(config: &std::path::Path) -> u8 {
    match candor_spec::load(config) {
        Ok(spec) => {
            let names: Vec<&str> = spec.services.keys().map(|n| n.as_str()).collect();
            println!(
                "{}: ok, {} services: {}",
                config.display(),
                names.len(),
                names.join(", ")
            );
            OK
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: invalid ({} error{})",
                config.display(),
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            USAGE
        }
    }
}

/// `candor reload` without NAME: the daemon re-reads its config (an invalid one changes
/// nothing).
/// `candor reload --plan`: what a reload would do to each service, and why; nothing changes.
pub async fn reload_plan(client: &Client, json: bool) -> u8 {
    match client
        .json::<candor_api::ReloadPlan>("POST", "/v1/reload?plan=true")
        .await
    {
        Ok(plan) if json => print_json(&plan),
        Ok(plan) => {
            for item in &plan.services {
                println!("{}", item.text);
            }
            let all: Vec<&str> = (plan.services.iter())
                .filter(|i| i.all_at_once)
                .map(|i| i.service.as_str())
                .collect();
            if !all.is_empty() {
                println!(
                    "note: a reload would stop every instance of {} at once",
                    all.join(", ")
                );
            }
            for n in &plan.notes {
                println!("note: {n}");
            }
            println!("(nothing was changed; `candor reload` does this)");
            OK
        }
        Err(e) => fail(e, json),
    }
}

pub async fn reload_config(client: &Client, json: bool) -> u8 {
    match client
        .json::<candor_api::ReloadOutcome>("POST", "/v1/reload")
        .await
    {
        Ok(out) if json => print_json(&out),
        Ok(out) => {
            let list = |v: &Vec<String>| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!(
                "reloaded: added {}; removed {}; changed {}; unchanged {}",
                list(&out.added),
                list(&out.removed),
                list(&out.changed),
                list(&out.unchanged)
            );
            for n in out.notes {
                println!("note: {n}");
            }
            OK
        }
        Err(e) => fail(e, json),
    }
}

/// `candor export systemd|kubernetes`: usage errors first, then the config, then the files.
pub fn export(
    target: ExportTarget,
    config: &std::path::Path,
    out: Option<&std::path::Path>,
    image: &[String],
) -> u8 {
    let usage = match (target, out) {
        (ExportTarget::Systemd, None) => {
            Some("export systemd needs --out DIR: it writes one file per unit")
        }
        (ExportTarget::Systemd, Some(_)) if !image.is_empty() => {
            Some("--image is for export kubernetes (systemd runs the command itself)")
        }
        _ => None,
    };
    if let Some(msg) = usage {
        eprintln!("candor: {msg}");
        return USAGE;
    }
    let spec = match candor_spec::load(config) {
        Ok(spec) => spec,
        Err(errors) => {
            eprintln!("{errors}");
            return USAGE;
        }
    };
    match (target, out) {
        (ExportTarget::Systemd, Some(dir)) => match export::systemd::systemd(&spec, dir) {
            Ok(n) => {
                println!("{n} units in {}", dir.display());
                OK
            }
            Err(e) => {
                eprintln!("candor: {e}");
                FAILED
            }
        },
        (ExportTarget::Systemd, None) => USAGE,
        (ExportTarget::Kubernetes, out) => {
            let images = match export::kubernetes::Images::parse(image, &spec) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("candor: {e}");
                    return USAGE;
                }
            };
            match export::kubernetes::write(&spec, &images, out) {
                Ok(n) => {
                    if let Some(file) = out {
                        println!("{n} objects in {}", file.display());
                    }
                    OK
                }
                Err(e) => {
                    eprintln!("candor: {e}");
                    FAILED
                }
            }
        }
    }
}

/// `candor completions SHELL`: completions on stdout.
pub fn completions(shell: clap_complete::Shell) -> u8 {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "candor", &mut std::io::stdout());
    OK
}

/// `candor man --out DIR`: candor.1, and candor-COMMAND.1 for each visible command.
pub fn man_pages(dir: &std::path::Path) -> u8 {
    use clap::CommandFactory;
    let write = |cmd: clap::Command, name: &str| -> std::io::Result<()> {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)
    };
    let top = Cli::command();
    let mut written = 0;
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        write(top.clone(), "candor")?;
        written += 1;
        for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
            // clap names are &'static str; this process writes the pages and ends.
            let name: &'static str = format!("candor-{}", sub.get_name()).leak();
            write(sub.clone().name(name), name)?;
            written += 1;
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            println!("{written} man pages in {}", dir.display());
            OK
        }
        Err(e) => {
            eprintln!("candor: writing man pages to {}: {e}", dir.display());
            FAILED
        }
    }
}
