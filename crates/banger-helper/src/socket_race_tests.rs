//! The socket directory swapped for a symlink while the helper binds: a thread exchanges
//! the directory and a symlink to a directory "the attacker" owns (`renameat2` with
//! `RENAME_EXCHANGE`, so the name always exists and flips between the two) as fast as it
//! can, all through [`crate::socket::bind`], for many iterations, half with the directory
//! there already (every other time with a stale socket to replace) and half with the
//! helper making it. In no iteration may anything of the helper's land in the
//! attacker's directory or change it: no socket, no removal, no mode or owner change of
//! it or its file. An
//! iteration either binds (the socket is then in the real directory, mode 0600) or is
//! refused. With `BANGER_RELIABILITY_OUT=DIR` the counts go to
//! `DIR/helper_socket_race.json` for `cargo xtask reliability`.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

const ITERATIONS: usize = 2000;

/// What an attacker's directory looks like, down to change times.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    mode: u32,
    uid: u32,
    ctime: (i64, i64),
    entries: Vec<(String, u64, u32, (i64, i64))>,
}

fn snapshot(dir: &Path) -> Snapshot {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                meta.ino(),
                meta.mode(),
                (meta.ctime(), meta.ctime_nsec()),
            )
        })
        .collect();
    entries.sort();
    Snapshot {
        mode: meta.mode(),
        uid: meta.uid(),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        entries,
    }
}

/// Swaps `a` and `b` while `running`, counting the swaps that happened.
fn swapper(
    a: PathBuf,
    b: PathBuf,
    start: Arc<Barrier>,
    running: Arc<AtomicBool>,
    swaps: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        start.wait();
        while running.load(Ordering::Relaxed) {
            if renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE).is_ok() {
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// The real directory after a round: whichever of the two names is not the symlink
/// (None when the helper never made one).
fn real_dir(names: [&Path; 2]) -> Option<PathBuf> {
    names.into_iter().find_map(|name| {
        std::fs::symlink_metadata(name)
            .ok()
            .filter(|meta| meta.is_dir())
            .map(|_| name.to_path_buf())
    })
}

#[test]
fn socket_dir_swapped_for_a_symlink_while_binding_is_never_followed() {
    let me = nix::unistd::geteuid().as_raw();
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The attacker's directory: it would pass the helper's checks if reached by its own
    // path (same owner, not writable by others), so only not following the link keeps
    // the helper out. A file is planted in it (and no `helper.sock`, which would make a
    // bind there fail and hide it).
    let attacker = root.path().join("attacker");
    std::fs::create_dir(&attacker).unwrap();
    std::fs::set_permissions(&attacker, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(attacker.join("precious"), b"mine").unwrap();
    std::fs::set_permissions(
        attacker.join("precious"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let before = snapshot(&attacker);

    let dir = base.join("run");
    let decoy = base.join("decoy");
    let socket = dir.join("helper.sock");
    let swaps = Arc::new(AtomicUsize::new(0));
    let mut bound = 0;
    let mut refused = 0;
    let mut mishandled: Vec<String> = Vec::new();
    for iteration in 0..ITERATIONS {
        let fresh = iteration % 2 == 1;
        // A known start: `run` the real directory (or missing), `decoy` the symlink.
        if let Some(real) = real_dir([&dir, &decoy]) {
            std::fs::remove_dir_all(&real).unwrap();
        }
        let _ = std::fs::remove_file(&dir);
        let _ = std::fs::remove_file(&decoy);
        std::os::unix::fs::symlink(&attacker, &decoy).unwrap();
        if !fresh {
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            // Every other time, a stale socket the helper must replace (probe, unlink).
            if iteration % 4 == 0 {
                drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
            }
        }

        let start = Arc::new(Barrier::new(2));
        let running = Arc::new(AtomicBool::new(true));
        let thread = swapper(
            dir.clone(),
            decoy.clone(),
            start.clone(),
            running.clone(),
            swaps.clone(),
        );
        start.wait();
        let outcome = crate::socket::bind(&socket, me);
        running.store(false, Ordering::Relaxed);
        thread.join().unwrap();

        let after = snapshot(&attacker);
        if after != before {
            mishandled.push(format!(
                "iteration {iteration} (fresh: {fresh}): the attacker's directory changed: \
                 {before:?} -> {after:?}"
            ));
            break;
        }
        match outcome {
            Ok(listener) => {
                bound += 1;
                // The socket is in the real directory, wherever its name went.
                let real = real_dir([&dir, &decoy]).expect("a bound socket's directory");
                match std::fs::symlink_metadata(real.join("helper.sock")) {
                    Ok(meta) if meta.file_type().is_socket() && meta.mode() & 0o777 == 0o600 => {}
                    other => mishandled.push(format!(
                        "iteration {iteration}: bound, but {}/helper.sock is {other:?}",
                        real.display()
                    )),
                }
                drop(listener);
            }
            Err(_) => refused += 1,
        }
    }
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "socket directory race: {ITERATIONS} iterations, {swaps} swaps, {bound} bound, \
         {refused} refused, {} mishandled",
        mishandled.len()
    );
    assert!(mishandled.is_empty(), "{mishandled:#?}");
    assert_eq!(bound + refused, ITERATIONS);
    // The race was run, not just the binds: swaps landed inside binds often enough that
    // some were refused.
    assert!(swaps > 0 && refused > 0, "{swaps} swaps, {refused} refused");
    if let Some(out) = std::env::var_os("BANGER_RELIABILITY_OUT") {
        std::fs::create_dir_all(&out).unwrap();
        let json = serde_json::json!({
            "iterations": ITERATIONS,
            "swaps": swaps,
            "bound": bound,
            "refused": refused,
            "mishandled": mishandled.len(),
        });
        std::fs::write(
            Path::new(&out).join("helper_socket_race.json"),
            serde_json::to_vec_pretty(&json).unwrap(),
        )
        .unwrap();
    }
}
