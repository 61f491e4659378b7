//! tsc: the host's TSC frequency in kHz, passed to TCG guests as `tsc_early_khz=`.
//!
//! Under TCG the guest's RDTSC reads the host TSC, and now and then a guest kernel fails
//! to calibrate it against the PIT and hangs at boot; telling it the frequency skips the
//! calibration. The frequency is measured once per process (RDTSC against the monotonic
//! clock over a short window) and cached.

use std::sync::OnceLock;
use std::time::Duration;

/// How long the measurement watches the TSC advance. This is the measurement itself, not
/// a wait for something: a longer window divides the error of the two clock readings.
pub const MEASUREMENT_WINDOW: Duration = Duration::from_millis(150);

/// The host TSC frequency in kHz, measured on first call and cached; `None` on arches
/// without a TSC or when the counter did not advance.
pub fn host_tsc_khz() -> Option<u64> {
    static CACHE: OnceLock<Option<u64>> = OnceLock::new();
    *CACHE.get_or_init(|| measure_tsc_khz(MEASUREMENT_WINDOW))
}

/// Measures the TSC frequency over `window` without caching (the first call of
/// [`host_tsc_khz`] blocks the calling thread for about `window`).
#[cfg(target_arch = "x86_64")]
pub fn measure_tsc_khz(window: Duration) -> Option<u64> {
    let (start_nanos_origin, start_cycles) = paired_sample();
    // Sleeping is the measurement: the TSC and the monotonic clock both run meanwhile.
    std::thread::sleep(window);
    let (end_nanos_origin, end_cycles) = paired_sample();
    let nanos = end_nanos_origin
        .duration_since(start_nanos_origin)
        .as_nanos();
    khz_from(end_cycles.checked_sub(start_cycles)?, nanos)
}

/// Measures the TSC frequency; there is no TSC on this arch.
#[cfg(not(target_arch = "x86_64"))]
pub fn measure_tsc_khz(_window: Duration) -> Option<u64> {
    None
}

/// Reads the TSC between two clock readings, a few times, and keeps the tightest bracket
/// so that being preempted between the two reads (2 busy cores) does not skew the result.
#[cfg(target_arch = "x86_64")]
fn paired_sample() -> (std::time::Instant, u64) {
    use std::time::Instant;
    let mut best: Option<(Duration, Instant, u64)> = None;
    for _ in 0..7 {
        let before = Instant::now();
        let cycles = read_tsc();
        let after = Instant::now();
        let width = after.duration_since(before);
        if best.is_none_or(|(best_width, _, _)| width < best_width) {
            best = Some((width, before + width / 2, cycles));
        }
    }
    match best {
        Some((_, instant, cycles)) => (instant, cycles),
        // Unreachable with a non-empty loop; kept total without a panic.
        None => (Instant::now(), read_tsc()),
    }
}

#[cfg(target_arch = "x86_64")]
fn read_tsc() -> u64 {
    // SAFETY: RDTSC is part of the x86_64 baseline, takes no operands and only reads the
    // time-stamp counter; it has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// kHz from a cycle count over a duration in nanoseconds; `None` for nonsense inputs.
pub fn khz_from(cycles: u64, nanos: u128) -> Option<u64> {
    if nanos == 0 || cycles == 0 {
        return None;
    }
    // cycles / (nanos / 1e9) / 1e3, rounded to nearest, in integers.
    let khz = (u128::from(cycles) * 1_000_000 + nanos / 2) / nanos;
    u64::try_from(khz).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn khz_from_table() {
        let cases: &[(u64, u128, Option<u64>)] = &[
            (2_596_124_000, 1_000_000_000, Some(2_596_124)),
            (389_418_600, 150_000_000, Some(2_596_124)),
            (1_500, 1_000, Some(1_500_000)),
            // Rounds to nearest.
            (2_596_124_600, 1_000_000_000, Some(2_596_125)),
            (0, 1_000, None),
            (1_000, 0, None),
        ];
        for (cycles, nanos, expected) in cases {
            assert_eq!(khz_from(*cycles, *nanos), *expected, "{cycles} / {nanos}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn measurement_is_plausible_and_stable() {
        let first = measure_tsc_khz(Duration::from_millis(100)).unwrap();
        let second = measure_tsc_khz(Duration::from_millis(100)).unwrap();
        for khz in [first, second] {
            assert!((500_000..10_000_000).contains(&khz), "{khz} kHz");
        }
        let diff = first.abs_diff(second) as f64;
        assert!(
            diff / first as f64 <= 0.02,
            "{first} vs {second} kHz differ by more than 2%"
        );
        let cached = host_tsc_khz().unwrap();
        assert_eq!(host_tsc_khz(), Some(cached));
        assert!(cached.abs_diff(first) as f64 / first as f64 <= 0.02);
        println!("TSC: {first} kHz, {second} kHz, cached {cached} kHz");
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[test]
    fn no_tsc_elsewhere() {
        assert_eq!(host_tsc_khz(), None);
    }
}
