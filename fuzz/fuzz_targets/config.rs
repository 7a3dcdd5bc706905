//! The config parser, given any bytes: it answers a config or errors, each naming the file
//! with a line and column inside it — never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent-candor-fuzz/candor.toml");
    if let Err(errors) = candor_spec::parse_str(path, text) {
        assert!(!errors.0.is_empty(), "an error without an error");
        let lines = text.split('\n').count().max(1);
        for e in &errors.0 {
            assert_eq!(e.file, path, "{e}");
            assert!(e.line >= 1 && e.line <= lines && e.col >= 1, "{e}");
            assert!(!e.message.is_empty());
        }
    }
});
