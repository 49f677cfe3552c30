//! Samples what the operating system knows about this process for `/varz`
//! and `$SYS` statsz: resident memory, CPU use, and available cores.
//!
//! Role: the runtime's side of `rnats_core::monitor::HostStats`. Linux reads
//! `/proc/self/stat` and `/proc/self/statm`; elsewhere memory and CPU read 0.
//! CPU is the percentage of one core used since the previous sample, as the
//! reference reports it.

use std::time::Instant;

use rnats_core::monitor::HostStats;

pub struct HostSampler {
    cores: u32,
    last: Option<(Instant, f64)>,
}

impl HostSampler {
    pub fn new() -> Self {
        HostSampler {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            last: None,
        }
    }

    pub fn sample(&mut self) -> HostStats {
        let now = Instant::now();
        let cpu_seconds = cpu_seconds();
        let cpu = match (self.last, cpu_seconds) {
            (Some((then, used_then)), Some(used)) => {
                let elapsed = now.duration_since(then).as_secs_f64();
                if elapsed > 0.0 {
                    // Rounded to a tenth, as the reference's numbers are.
                    ((used - used_then) / elapsed * 1000.0).round() / 10.0
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        if let Some(used) = cpu_seconds {
            self.last = Some((now, used));
        }
        HostStats {
            mem: resident_bytes().unwrap_or(0),
            cpu: cpu.max(0.0),
            cores: self.cores,
        }
    }
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

/// User plus system CPU time of this process, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is parenthesized and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; 3 is the first after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// Resident set size in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cores() {
        let mut sampler = HostSampler::new();
        let first = sampler.sample();
        assert!(first.cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(first.mem > 0);
            assert!(cpu_seconds().is_some());
        }
    }
}
