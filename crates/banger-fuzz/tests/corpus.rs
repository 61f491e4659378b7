//! Replays every file of each fuzz target's corpus (`fuzz/corpus/<target>/`: the seeds,
//! and every input a fuzzer found a crash with) through the target's body, so the fast
//! profile runs what `cargo fuzz` runs without a nightly toolchain or libFuzzer. A
//! target whose corpus is missing or empty fails: a replay of nothing would pass.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// The corpus files of `target`, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_corpus() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (target, _) in banger_fuzz::TARGETS {
        let source = fuzz.join("fuzz_targets").join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("banger_fuzz::{target}(")),
            "{} does not call banger_fuzz::{target}",
            source.display()
        );
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        assert!(!corpus(target).is_empty(), "{target}: empty corpus");
    }
}

macro_rules! replay {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            let files = corpus(stringify!($target));
            assert!(!files.is_empty(), "empty corpus");
            for (name, bytes) in &files {
                let outcome = std::panic::catch_unwind(|| banger_fuzz::$target(bytes));
                assert!(outcome.is_ok(), "{}/{name} fails", stringify!($target));
            }
            eprintln!("{}: {} corpus inputs replayed", stringify!($target), files.len());
        }
    )*};
}

replay!(
    rpc_frame,
    agent_frame,
    helper_request,
    dns_packet,
    git_patch,
    tar_unpack,
    ssh_config,
    oci_manifest
);
