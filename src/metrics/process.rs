//! The process's own metrics under the names every Prometheus client
//! library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`, `process_threads`), read from `/proc` at
//! each scrape. Off Linux, or when `/proc` cannot be read, the families are
//! left out rather than reported as zero.
//!
//! It reads; it never changes anything about the process.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// One reading of the process's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub threads: f64,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Reads the figures of this process from `/proc/self/stat` (times in
/// clock ticks, memory in pages) and the boot time from `/proc/stat`.
fn read_figures() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    parse_stat(&stat, btime, clock_ticks_per_second()?, page_size()?)
}

/// Parses `/proc/PID/stat` (see proc(5)). The command name, field 2, is in
/// parentheses and may itself hold spaces or parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat(stat: &str, btime: f64, ticks: f64, page: f64) -> Option<ProcessFigures> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `fields[0]` is field 3 (state); field n is `fields[n - 3]`.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    Some(ProcessFigures {
        cpu_seconds: (utime + stime) / ticks,
        threads: field(20)?,
        start_time_seconds: btime + field(22)? / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
    })
}

fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf reads a configuration value; it touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

fn page_size() -> Option<f64> {
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then_some(page as f64)
}

/// Open file descriptors: the entries of `/proc/self/fd`.
fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

/// The soft limit on open file descriptors.
fn max_fds() -> Option<f64> {
    let (soft, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    (soft != rlimit::INFINITY).then_some(soft as f64)
}

/// The collector registered with the metrics registry.
#[derive(Debug, Default)]
pub struct ProcessCollector;

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(f) = read_figures() {
            // The text encoder adds `_total` to a counter's name.
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent, in seconds.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(f.cpu_seconds).encode(metric)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size, in bytes.",
                f.resident_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes.",
                f.virtual_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                f.start_time_seconds,
            )?;
            gauge(
                &mut encoder,
                "process_threads",
                "Operating system threads of the process.",
                f.threads,
            )?;
        }
        if let Some(n) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors.",
                n,
            )?;
        }
        if let Some(n) = max_fds() {
            gauge(
                &mut encoder,
                "process_max_fds",
                "The limit on open file descriptors.",
                n,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_memory_and_start_from_a_stat_line() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let stat = "4242 (pipe (medic)) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    250 50 0 0 20 0 9 0 120000 73400320 3000 18446744073709551615";
        let f = parse_stat(stat, 1_700_000_000.0, 100.0, 4096.0).unwrap();
        assert_eq!(f.cpu_seconds, 3.0);
        assert_eq!(f.threads, 9.0);
        assert_eq!(f.start_time_seconds, 1_700_001_200.0);
        assert_eq!(f.virtual_bytes, 73_400_320.0);
        assert_eq!(f.resident_bytes, 3000.0 * 4096.0);
        assert!(parse_stat("4242 (short) S 1", 0.0, 100.0, 4096.0).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_figures() {
        let f = read_figures().expect("/proc is readable on Linux");
        assert!(f.resident_bytes > 0.0);
        assert!(f.threads >= 1.0);
        assert!(open_fds().unwrap() >= 3.0);
    }
}
