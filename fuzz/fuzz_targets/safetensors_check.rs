//! The watcher's safetensors length check (8 + header length + end of the
//! data = file size), the test every weight file and dump passes before it
//! counts as complete. It is the workspace's one header reader
//! (`source::st::Header`), so it must agree with that reader on the same
//! bytes. A file it accepts has tensors that tile the data section exactly;
//! the check reads the header only, so it must stay cheap whatever the
//! header claims.
#![no_main]

use std::path::Path;

use daemon::watch::header::check_safetensors_from;
use libfuzzer_sys::fuzz_target;
use source::st::Header;

fuzz_target!(|data: &[u8]| {
    let size = data.len() as u64;
    let checked = check_safetensors_from(data, size);
    let path = Path::new("/fuzz/run/acts-1.safetensors");
    let header = Header::from_bytes(path, data);
    assert_eq!(checked.is_ok(), header.is_ok(), "{checked:?} vs {header:?}");
    let (Ok(info), Ok(header)) = (checked, header) else {
        return;
    };
    // Accepted: the prefix, header and every tensor are inside the file.
    let header_len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    assert!(8 + header_len <= size);
    assert_eq!(header.header_len(), header_len);
    for entry in header.tensors().values() {
        assert!(entry.start >= 8 + header_len && entry.start + entry.len <= size);
    }
    // The same step, or the same refusal of the metadata's step.
    assert_eq!(info.step.is_some(), header.metadata().contains_key("step"));
    assert_eq!(
        matches!(info.step, Some(Ok(_))),
        matches!(header.step(), Ok(Some(_)))
    );
    // Deterministic.
    assert_eq!(check_safetensors_from(data, size), Ok(info));
    // A claimed size one byte off must fail.
    assert!(check_safetensors_from(data, size + 1).is_err());
});
