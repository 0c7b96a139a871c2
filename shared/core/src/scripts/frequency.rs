//! Sync frequencies as Nango writes them (`runs: every 30 minutes`, `frequency: 'every hour'`).

/// Syncs run at most every 30 seconds (the scheduler ticks that often).
pub const MIN_FREQUENCY_SECS: u64 = 30;

/// Nango's named intervals, which are not `<number> <unit>`.
const NAMED: [(&str, u64); 8] = [
    ("half day", 12 * 3600),
    ("half hour", 30 * 60),
    ("quarter hour", 15 * 60),
    ("minute", 60),
    ("hour", 3600),
    ("day", 86_400),
    ("week", 7 * 86_400),
    ("month", 30 * 86_400),
];

/// Parses `every 30 minutes`, `every hour`, `every 2 days`, `every 30s`, `every 1h 30m` (the
/// `every ` is optional) into seconds. Below [`MIN_FREQUENCY_SECS`] is an error.
pub fn parse_frequency(runs: &str) -> Result<u64, String> {
    let text = runs.trim();
    let interval = text.strip_prefix("every ").unwrap_or(text).trim();
    let secs = match NAMED.iter().find(|(name, _)| *name == interval) {
        Some((_, secs)) => *secs,
        None => humantime::parse_duration(interval)
            .map_err(|e| {
                format!(
                    "`{runs}` is not a frequency ({e}); write e.g. `every 30 minutes`, `every hour`, `every 2 days`"
                )
            })?
            .as_secs(),
    };
    if secs < MIN_FREQUENCY_SECS {
        return Err(format!(
            "`{runs}` is too frequent: syncs run at most every {MIN_FREQUENCY_SECS} seconds"
        ));
    }
    Ok(secs)
}
