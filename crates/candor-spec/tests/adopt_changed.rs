//! `[daemon] adopt_changed`: what a restarted daemon does with a run started from another
//! config.

use std::path::Path;

use candor_spec::{parse_str, AdoptChanged};

fn parse(text: &str) -> Result<candor_spec::Spec, String> {
    parse_str(Path::new("/etc/candor/candor.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn adopt_changed_is_restart_unless_the_config_says_keep() {
    assert_eq!(
        parse("").unwrap().daemon.adopt_changed,
        AdoptChanged::Restart
    );
    for (value, want) in [
        ("restart", AdoptChanged::Restart),
        ("keep", AdoptChanged::Keep),
    ] {
        let spec = parse(&format!("[daemon]\nadopt_changed = \"{value}\"\n")).unwrap();
        assert_eq!(spec.daemon.adopt_changed, want);
    }
}

#[test]
fn a_bad_adopt_changed_names_its_place_and_the_choices() {
    let err = parse("[daemon]\nadopt_changed = \"kep\"\n").unwrap_err();
    assert!(err.contains("/etc/candor/candor.toml:2:17"), "{err}");
    assert!(err.contains("did you mean \"keep\"?"), "{err}");
    assert!(err.contains("expected \"restart\" or \"keep\""), "{err}");
    let err = parse("[daemon]\nadopt_changed = true\n").unwrap_err();
    assert!(err.contains("/etc/candor/candor.toml:2:17"), "{err}");
    assert!(err.contains("daemon.adopt_changed"), "{err}");
}
