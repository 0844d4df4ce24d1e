//! A process's memory, threads and open descriptors, read from `/proc`
//! (Linux): what the soak samples of the child daemon and what the
//! benchmarks report as peak resident memory (`VmHWM`), of a child or of
//! themselves (`std::process::id()`).

use anyhow::{Context, Result};

/// The figures of `/proc/<pid>/status` the tools use, KiB unless noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStatus {
    /// Resident memory (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory so far (`VmHWM`).
    pub hwm_kib: u64,
    /// Resident anonymous memory: heap, stacks (`RssAnon`).
    pub anon_kib: u64,
    /// Resident file-backed memory: binary, libraries, mapped files
    /// (`RssFile`).
    pub file_kib: u64,
    /// Resident shared memory, e.g. SQLite's WAL index (`RssShmem`).
    pub shmem_kib: u64,
    /// Threads (a count).
    pub threads: u64,
}

/// The numeric value of the `name` line (`"VmHWM:"`) of a status text.
fn field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
}

fn read_status(pid: u32) -> Result<(String, String)> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok((path, text))
}

impl ProcStatus {
    /// Reads `/proc/<pid>/status`; an error when it is gone or lacks one of
    /// the fields.
    pub fn read(pid: u32) -> Result<ProcStatus> {
        let (path, status) = read_status(pid)?;
        let get = |name: &str| field(&status, name).with_context(|| format!("{path}: no {name}"));
        Ok(ProcStatus {
            rss_kib: get("VmRSS:")?,
            hwm_kib: get("VmHWM:")?,
            anon_kib: get("RssAnon:")?,
            file_kib: get("RssFile:")?,
            shmem_kib: get("RssShmem:")?,
            threads: get("Threads:")?,
        })
    }
}

/// Open file descriptors of `pid` (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("listing {dir}"))?
        .count() as u64)
}

/// Peak resident memory of `pid` so far (`VmHWM`), MiB; `None` when it
/// cannot be read.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let (_, status) = read_status(pid).ok()?;
    field(&status, "VmHWM:").map(|kib| kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads() {
        let me = std::process::id();
        let s = ProcStatus::read(me).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib && s.threads >= 1);
        assert!(open_fds(me).unwrap() >= 3);
        assert!(peak_rss_mib(me).unwrap() > 0.0);
        assert_eq!(field("VmHWM:\t  1234 kB\n", "VmHWM:"), Some(1234));
    }
}
