//! The published-ports part of `cargo xtask bench` (alone: `cargo xtask bench ports`;
//! needs root): one tiny guest with busybox httpd serving a 64 MiB file, fetched once
//! with curl from the host namespace straight from the guest's address and once through
//! the port the daemon publishes on 127.0.0.1 (its user-space forwarder), interleaved
//! after one warm-up fetch so the file is in the guest's page cache for both.

use std::process::Command;

use anyhow::{Context, Result, bail};

use super::Bench;

pub(super) const VM: &str = "bench-ports";
const GUEST_PORT: u16 = 8000;
const HOST_PORT: u16 = 18090;
const MIB: u64 = 64;

/// One curl fetch of `url` inside `ns`: (bytes, seconds).
fn fetch(ns: &str, url: &str) -> Result<(u64, f64)> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "-o", "/dev/null"])
        .args([
            "-w",
            "%{size_download} %{time_total}",
            "--max-time",
            "600",
            url,
        ])
        .output()
        .context("cannot run curl")?;
    if !out.status.success() {
        bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let bytes: u64 = fields.next().context("curl's size")?.parse()?;
    let secs: f64 = fields.next().context("curl's time")?.parse()?;
    if bytes != MIB << 20 {
        bail!("curl {url} fetched {bytes} bytes, not {}", MIB << 20);
    }
    Ok((bytes, secs))
}

fn rate(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64 / secs
}

pub(super) fn section(bench: &Bench, ns: &str) -> Result<String> {
    let publish = format!("{HOST_PORT}:{GUEST_PORT}");
    bench.banger(&[
        "vm", "create", "--image", "tiny", "--name", VM, "-p", &publish,
    ])?;
    let address = bench.json(&["vm", "show", VM])?["address"]
        .as_str()
        .context("the bench VM has no address")?
        .to_string();
    let serve = format!(
        "mkdir -p /www && head -c {} /dev/zero > /www/blob && httpd -p {GUEST_PORT} -h /www",
        MIB << 20
    );
    bench.banger(&["vm", "exec", VM, "--", "sh", "-c", &serve])?;
    let direct = format!("http://{address}:{GUEST_PORT}/blob");
    let published = format!("http://127.0.0.1:{HOST_PORT}/blob");
    fetch(ns, &direct)?; // warm-up: the file into the guest's page cache
    let (bytes, direct_secs) = fetch(ns, &direct)?;
    let (_, published_secs) = fetch(ns, &published)?;
    let accel = bench.json(&["vm", "show", VM])?["accelerator"]
        .as_str()
        .unwrap_or("-")
        .to_string();
    Ok(format!(
        "\n## Published ports: forwarder vs direct (one {MIB} MiB HTTP transfer each)\n\n\
         `cargo xtask bench ports`: a tiny guest ({accel}) runs busybox httpd on port \
         {GUEST_PORT} serving {MIB} MiB of zeros from its page cache; curl in the host \
         namespace fetches it once straight from the guest's address and once through \
         `-p {publish}` (the daemon's user-space forwarder on 127.0.0.1), after one \
         warm-up fetch. One run each; debug build of bangerd.\n\n\
         | path | time | throughput |\n| --- | --- | --- |\n\
         | direct, `http://{address}:{GUEST_PORT}/blob` | {direct_secs:.2} s | {:.1} MiB/s |\n\
         | published, `http://127.0.0.1:{HOST_PORT}/blob` | {published_secs:.2} s | {:.1} MiB/s |\n\n\
         Through the forwarder the transfer took **{:.2}x** the direct time ({}). One \
         fetch each, so a run's noise is not averaged out.\n",
        rate(bytes, direct_secs),
        rate(bytes, published_secs),
        published_secs / direct_secs,
        if published_secs > direct_secs {
            "the forwarder's cost"
        } else {
            "no cost seen in this run: the forwarder was not the bottleneck"
        },
    ))
}

/// Replaces the published-ports section of the report, or appends it.
pub(super) fn splice(report: &str, section: &str) -> String {
    super::splice_section(report, "Published ports", section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place() {
        let report = "# B\n\n## One\nx\n\n## Published ports: old\nold\n\n## Two\ny\n";
        assert_eq!(
            splice(report, "\n## Published ports: new\nnew\n"),
            "# B\n\n## One\nx\n\n## Published ports: new\nnew\n\n## Two\ny\n"
        );
        assert_eq!(
            splice("# B\n", "\n## Published ports\nz\n"),
            "# B\n\n## Published ports\nz\n"
        );
    }
}
