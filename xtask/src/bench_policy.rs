//! The network-policy part of `cargo xtask bench` (alone: `cargo xtask bench policy`; no
//! guest is booted):
//!
//! - the policy resolver (`banger_dns::serve_policy`, in this process, over loopback)
//!   against a stand-in upstream that answers every A query at once: per-query latency
//!   asked straight of the upstream vs through the resolver (allowed name, forwarded;
//!   denied name, refused without forwarding), interleaved in one run, and answers per
//!   second with 8 concurrent clients both ways. The learner is a no-op here, so this is
//!   the resolver's own cost; the helper's cost of allowing an answer is the next part;
//! - the root helper's policy operations in a network namespace made for the run (needs
//!   root): `set_policy` new and replacing, `add_policy_addresses`, `remove_policy`,
//!   with 20 other guests' policies installed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use banger_dns::policy_server::{AllowEntry, LearnFuture, Learner, ResolverConfig, ResolverStats};
use banger_dns::{PolicyTable, serve_policy};
use banger_model::NetPolicy;
use banger_proto::helper::{PolicyAddress, PolicyNet};
use tokio::net::UdpSocket;

const QUERIES: usize = 2000;
const CLIENTS: usize = 8;
const LOAD: Duration = Duration::from_secs(2);
const HELPER_ROUNDS: usize = 10;

struct CountingLearner(AtomicU64);

impl Learner for CountingLearner {
    fn learn(&self, _guest: Ipv4Addr, _entries: Vec<AllowEntry>) -> LearnFuture {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

/// Answers every query with one A record (192.0.2.1, TTL 300).
async fn upstream(socket: UdpSocket) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let mut reply = buf[..len].to_vec();
        reply[2] |= 0x80;
        reply[3] = 0x80;
        reply[6..8].copy_from_slice(&1u16.to_be_bytes());
        reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// Per-query latencies (microseconds) of `count` sequential queries for `name`.
async fn latencies(server: SocketAddr, name: &str, count: usize) -> Result<Vec<f64>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut buf = vec![0u8; 1500];
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let q = query(i as u16, name);
        let started = Instant::now();
        socket.send(&q).await?;
        tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .context("no answer within 2 s")??;
        out.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

/// Answers per second with `clients` clients asking back to back for `LOAD`.
async fn throughput(server: SocketAddr, name: &'static str, clients: usize) -> Result<f64> {
    let deadline = Instant::now() + LOAD;
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(server).await?;
            let mut buf = vec![0u8; 1500];
            let mut answered = 0u64;
            let mut id = (c as u16) << 12;
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                socket.send(&query(id, name)).await?;
                if tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf))
                    .await
                    .is_ok()
                {
                    answered += 1;
                }
            }
            anyhow::Ok(answered)
        }));
    }
    let mut total = 0u64;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / LOAD.as_secs_f64())
}

fn pct(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = ((values.len() - 1) as f64 * p).round() as usize;
    values[at]
}

async fn resolver_rows() -> Result<String> {
    let up = UdpSocket::bind("127.0.0.1:0").await?;
    let up_addr = up.local_addr()?;
    tokio::spawn(upstream(up));
    let table = Arc::new(PolicyTable::default());
    table.insert(
        Ipv4Addr::LOCALHOST,
        NetPolicy::parse(&["*.bench.test:443"]).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let learner = Arc::new(CountingLearner(AtomicU64::new(0)));
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let resolver = socket.local_addr()?;
    tokio::spawn(serve_policy(
        socket,
        table,
        learner.clone(),
        ResolverConfig {
            upstreams: vec![up_addr],
            timeout: Duration::from_secs(2),
            // Not loopback's network: the stand-in's answer (192.0.2.1) is learnable.
            pool: (Ipv4Addr::new(172, 30, 0, 0), 24),
        },
        Arc::new(ResolverStats::default()),
        std::future::pending::<()>(),
    ));
    // Interleaved in chunks so both sides see the same machine.
    let (mut direct, mut through, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        direct.extend(latencies(up_addr, "www.bench.test", QUERIES / 10).await?);
        through.extend(latencies(resolver, "www.bench.test", QUERIES / 10).await?);
        refused.extend(latencies(resolver, "www.denied.test", QUERIES / 10).await?);
    }
    // The answer never changes: the learner is asked once, later answers are fresh.
    let learned = learner.0.load(Ordering::Relaxed);
    if learned == 0 {
        bail!("the resolver never handed an answer to the learner");
    }
    let direct_qps = throughput(up_addr, "www.bench.test", CLIENTS).await?;
    let through_qps = throughput(resolver, "www.bench.test", CLIENTS).await?;
    let (d50, t50) = (pct(&mut direct, 0.5), pct(&mut through, 0.5));
    Ok(format!(
        "| straight to the upstream stand-in | {d50:.0} | {:.0} | {direct_qps:.0} |\n\
         | through the policy resolver, allowed name (forwarded; the answer's address handed to the learner once, fresh after) | {t50:.0} | {:.0} | {through_qps:.0} |\n\
         | through the policy resolver, denied name (REFUSED, nothing forwarded) | {:.0} | {:.0} | |\n\n\
         Added by the resolver (allowed name, medians): **{:.0} us** ({:.1}x the direct query).\n",
        pct(&mut direct, 0.99),
        pct(&mut through, 0.99),
        pct(&mut refused, 0.5),
        pct(&mut refused, 0.99),
        t50 - d50,
        t50 / d50
    ))
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

fn median_ms(mut values: Vec<f64>) -> f64 {
    pct(&mut values, 0.5)
}

async fn helper_rows(root: &Path) -> Result<String> {
    let dir = tempdir()?;
    let ns = format!("bgbench-{}", std::process::id());
    ip(&["netns", "add", &ns])?;
    let socket = dir.join("helper.sock");
    let mut helper = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(root.join("target/debug/banger-helper"))
        .args(["--owner-uid", "0", "--state-dir"])
        .arg(&dir)
        .arg("--runtime-dir")
        .arg(&dir)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start banger-helper")?;
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                bail!("banger-helper never listened");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let client = banger_net::HelperClient::unix(&socket);
        client.ensure_bridge().await?;
        let nets = |n: u8| -> Vec<PolicyNet> {
            (0..n)
                .map(|i| PolicyNet {
                    addr: Ipv4Addr::new(10, i, 0, 0),
                    prefix_len: 16,
                    port: Some(443),
                })
                .collect()
        };
        for other in 100..120u8 {
            let guest = Ipv4Addr::new(172, 30, 0, other);
            client
                .set_policy(
                    guest,
                    &format!("bgt-{other:08x}"),
                    42070,
                    Some(42071),
                    nets(3),
                    false,
                )
                .await?;
        }
        let (mut new, mut replace, mut add1, mut add16, mut remove) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let guest = Ipv4Addr::new(172, 30, 0, 5);
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        for round in 0..HELPER_ROUNDS {
            let t = Instant::now();
            client
                .set_policy(guest, "bgt-0000bench", 42070, Some(42071), nets(3), false)
                .await?;
            new.push(ms(t));
            let t = Instant::now();
            client
                .set_policy(guest, "bgt-0000bench", 42070, Some(42071), nets(4), false)
                .await?;
            replace.push(ms(t));
            let entry = |i: u8| PolicyAddress {
                ip: Ipv4Addr::new(192, 0, 2, i),
                port: Some(443),
                timeout_secs: 60,
            };
            let t = Instant::now();
            client
                .add_policy_addresses(guest, vec![entry(round as u8 + 1)])
                .await?;
            add1.push(ms(t));
            let t = Instant::now();
            client
                .add_policy_addresses(guest, (1..=16).map(entry).collect())
                .await?;
            add16.push(ms(t));
            let t = Instant::now();
            client.remove_policy(guest).await?;
            remove.push(ms(t));
        }
        for other in 100..120u8 {
            client
                .remove_policy(Ipv4Addr::new(172, 30, 0, other))
                .await?;
        }
        Ok(format!(
            "| `set_policy`, new guest (3 networks) | {:.1} |\n\
             | `set_policy`, replacing it (4 networks) | {:.1} |\n\
             | `add_policy_addresses`, 1 address | {:.1} |\n\
             | `add_policy_addresses`, 16 addresses | {:.1} |\n\
             | `remove_policy` | {:.1} |\n",
            median_ms(new),
            median_ms(replace),
            median_ms(add1),
            median_ms(add16),
            median_ms(remove)
        ))
    }
    .await;
    let _ = helper.kill();
    let _ = helper.wait();
    let _ = ip(&["netns", "del", &ns]);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("banger-bench-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs the policy benchmarks; returns the BENCHMARKS.md section.
pub(super) fn section(root: &Path) -> Result<String> {
    let runtime = tokio::runtime::Runtime::new()?;
    let resolver = runtime.block_on(resolver_rows())?;
    let helper = if is_root() {
        let rows = runtime.block_on(helper_rows(root))?;
        format!(
            "\n### Root helper (debug build, in a network namespace, 20 other guests' policies installed; median of {HELPER_ROUNDS} ms)\n\n\
             Each is one `nft -f` transaction after listing banger's tables; the resolver waits for \
             `add_policy_addresses` before it answers the guest, so that is the latency an allowed \
             lookup adds on top of the resolver's own when its address is new (an address allowed \
             recently enough is not sent again).\n\n\
             | operation | ms |\n| --- | --- |\n{rows}"
        )
    } else {
        "\n### Root helper\n\nNot measured: needs root (a network namespace and banger-helper).\n"
            .into()
    };
    Ok(format!(
        "\n## Network policy (`cargo xtask bench policy`)\n\n\
         ### Policy resolver (debug build of xtask, in process, loopback; {QUERIES} sequential queries per row, interleaved; {CLIENTS} clients for {}s for the rate)\n\n\
         | path | p50 us | p99 us | answers/s |\n| --- | --- | --- | --- |\n{resolver}{helper}",
        LOAD.as_secs()
    ))
}

/// Replaces the `## Network policy` section of `report` (or appends it).
pub(super) fn splice(report: &str, section: &str) -> String {
    super::splice_section(report, "Network policy", section)
}
