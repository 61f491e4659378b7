//! Load test for the `.vm` responder over loopback: serves one name in-process, then
//! 1..n client tasks send A queries one at a time (each waits for its reply), and the
//! run reports queries per second and latency percentiles. Bounded: a fixed number of
//! queries, a timeout per query (a lost reply counts as lost, not as a hang).
//!
//! `cargo run --release -p banger-dns --example dns_bench -- [--queries N] [--clients N] [--json]`

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its figures on stdout"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_dns::{StaticNames, serve};
use tokio::net::UdpSocket;

const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
const WARMUP_QUERIES: usize = 1000;

#[derive(Debug)]
struct Options {
    queries: usize,
    clients: usize,
    json: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        queries: 20_000,
        clients: 2,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            let value = args.next().ok_or(format!("{name} needs a value"))?;
            match value.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: `{value}` is not a positive number")),
            }
        };
        match arg.as_str() {
            "--queries" => options.queries = number("--queries")?,
            "--clients" => options.clients = number("--clients")?,
            "--json" => options.json = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientRun {
    latencies: Vec<Duration>,
    lost: usize,
}

fn a_query(id: u16) -> Vec<u8> {
    let mut packet = id.to_be_bytes().to_vec();
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    packet.extend_from_slice(b"\x03web\x02vm\x00\x00\x01\x00\x01");
    packet
}

async fn client(server: SocketAddr, queries: usize, id_base: u16) -> std::io::Result<ClientRun> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let mut run = ClientRun {
        latencies: Vec::with_capacity(queries),
        lost: 0,
    };
    let mut buf = [0u8; 512];
    for i in 0..queries {
        let id = id_base.wrapping_add(i as u16);
        let packet = a_query(id);
        let started = Instant::now();
        socket.send(&packet).await?;
        let answered = tokio::time::timeout(REPLY_TIMEOUT, async {
            loop {
                let len = socket.recv(&mut buf).await?;
                // A late reply to an earlier, timed-out query has another id.
                if len >= 2 && buf[..2] == id.to_be_bytes() {
                    return Ok::<_, std::io::Error>(());
                }
            }
        })
        .await;
        match answered {
            Ok(result) => {
                result?;
                run.latencies.push(started.elapsed());
            }
            Err(_) => run.lost += 1,
        }
    }
    Ok(run)
}

async fn load(server: SocketAddr, queries: usize, clients: usize) -> std::io::Result<ClientRun> {
    let per_client = queries.div_ceil(clients);
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(client(server, per_client, (c as u16) << 12)));
    }
    let mut total = ClientRun::default();
    for task in tasks {
        let run = task.await.map_err(std::io::Error::other)??;
        total.latencies.extend(run.latencies);
        total.lost += run.lost;
    }
    Ok(total)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options()?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let server = socket.local_addr()?;
    let names = Arc::new(StaticNames::new());
    names.insert("web", Ipv4Addr::new(172, 30, 0, 5));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve(socket, names, stopped));

    load(server, WARMUP_QUERIES, 1).await?;
    let started = Instant::now();
    let mut run = load(server, options.queries, options.clients).await?;
    let elapsed = started.elapsed();
    let _ = stop.send(());
    serving.await?;

    run.latencies.sort_unstable();
    let answered = run.latencies.len();
    let qps = answered as f64 / elapsed.as_secs_f64();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let p50 = micros(percentile(&run.latencies, 50.0));
    let p99 = micros(percentile(&run.latencies, 99.0));
    let max = micros(run.latencies.last().copied().unwrap_or_default());
    if options.json {
        println!(
            "{{\"bench\":\"dns\",\"clients\":{},\"queries\":{},\"answered\":{answered},\
             \"lost\":{},\"elapsed_s\":{:.3},\"qps\":{qps:.0},\"p50_us\":{p50:.1},\
             \"p99_us\":{p99:.1},\"max_us\":{max:.1}}}",
            options.clients,
            options.clients * options.queries.div_ceil(options.clients),
            run.lost,
            elapsed.as_secs_f64(),
        );
    } else {
        println!(
            "dns: {answered} A queries answered ({} lost) by {} clients in {:.3}s: \
             {qps:.0} queries/s, p50 {p50:.1} us, p99 {p99:.1} us, max {max:.1} us",
            run.lost,
            options.clients,
            elapsed.as_secs_f64(),
        );
    }
    Ok(())
}
