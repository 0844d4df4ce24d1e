//! The `Authorization: Basic …` header value of a scrape request
//! (`web_config::parse_basic`). A header that parses gives a user without
//! `:`, and encoding that user and password again parses back to them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use daemon::web_config::parse_basic;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((user, password)) = parse_basic(header) {
        assert!(!user.contains(':'));
        let again = format!("Basic {}", encode(format!("{user}:{password}").as_bytes()));
        assert_eq!(parse_basic(&again), Some((user, password)));
    }
});

/// Standard base64 with padding, written out here so the check does not use
/// the decoder's own crate.
fn encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
