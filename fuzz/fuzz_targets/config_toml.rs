//! The daemon's TOML config: `config::parse` (schema, then validation). An
//! accepted config parses to the same value again and describes itself
//! (`check-config`); every error names the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use daemon::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/etc/probewatch.toml");
    match config::parse(text, path) {
        Ok(parsed) => {
            assert!(!parsed.runs.is_empty());
            let again = config::parse(text, path).expect("the same text parses again");
            assert_eq!(parsed, again);
            assert!(!parsed.describe().is_empty());
        }
        Err(e) => probewatch_fuzz::assert_names(&e.to_string(), path),
    }
});
