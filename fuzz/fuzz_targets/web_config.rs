//! The web config YAML (TLS, basic auth, headers): `web_config::parse`,
//! anchored in a folder where the seed script put a real certificate and key
//! (`cert.pem`, `key.pem`, `ca.pem`), so TLS settings are reached. Every
//! error names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use daemon::web_config;
use probewatch_fuzz::project_root;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = project_root().join("fuzz/corpus-files/web/web.yml");
    match web_config::parse(text, &path) {
        Ok(config) => {
            assert!(!config.describe().is_empty());
        }
        Err(e) => probewatch_fuzz::assert_names(&e.to_string(), &path),
    }
});
