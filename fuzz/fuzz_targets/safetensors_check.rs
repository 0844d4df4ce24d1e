//! The watcher's safetensors length check (8 + header length + end of the
//! data = file size), the test every weight file and dump passes before it
//! counts as complete. A file it accepts has tensors that tile the data
//! section exactly; the check reads the header only, so it must stay cheap
//! whatever the header claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use daemon::watch::header::check_safetensors_from;

fuzz_target!(|data: &[u8]| {
    let size = data.len() as u64;
    let Ok(info) = check_safetensors_from(data, size) else {
        return;
    };
    // Accepted: the prefix and header are inside the file.
    let header_len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    assert!(8 + header_len <= size);
    // Deterministic.
    assert_eq!(check_safetensors_from(data, size), Ok(info));
    // A claimed size one byte off must fail.
    assert!(check_safetensors_from(data, size + 1).is_err());
});
