//! sysinfo: what `hello` reports about the guest, read from /proc (never through NSS:
//! the binary is static, so no hostname or user lookups through libc).

use std::fs;

use banger_proto::agent::{FEATURE_EXEC_CODES, FEATURE_TTY, FEATURE_USER, Hello, PROTOCOL_VERSION};

/// The hello answer for this boot of this guest.
pub fn hello() -> Hello {
    let read = |path: &str| {
        fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    Hello {
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        hostname: read("/proc/sys/kernel/hostname"),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        uptime_ms: parse_uptime_ms(&read("/proc/uptime")).unwrap_or(0),
        features: [FEATURE_TTY, FEATURE_USER, FEATURE_EXEC_CODES]
            .map(str::to_owned)
            .to_vec(),
    }
}

/// Milliseconds since boot from `/proc/uptime` ("12345.67 2345.12").
pub fn parse_uptime_ms(text: &str) -> Option<u64> {
    let seconds = text.split_whitespace().next()?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let whole: u64 = whole.parse().ok()?;
    let mut millis = 0;
    let mut scale = 100;
    for digit in fraction.chars().take(3) {
        millis += u64::from(digit.to_digit(10)?) * scale;
        scale /= 10;
    }
    whole.checked_mul(1000)?.checked_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_uptime() {
        let table = [
            ("12345.67 2345.12\n", Some(12_345_670)),
            ("0.05 0.01", Some(50)),
            ("7 1", Some(7000)),
            ("3.1415 1", Some(3141)),
            ("", None),
            ("x.5 1", None),
            ("1.x 1", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_uptime_ms(text), want, "{text:?}");
        }
    }

    #[test]
    fn hello_reports_this_boot() {
        let hello = hello();
        assert_eq!(hello.protocol, PROTOCOL_VERSION);
        let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(hello.boot_id, boot_id.trim());
        assert!(hello.uptime_ms > 0);
    }
}
