//! Keypair creation with a fake `ssh-keygen` (deterministic keys, recorded calls, an
//! optional failure): layout and modes, idempotence, self-healing `.pub`, cleanup on
//! failure, and many concurrent first uses agreeing on one key. `tests/keypair.rs` does
//! the same against the real ssh-keygen.

use std::future::Future;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use banger_exec::{CmdOutput, ExecError};

use super::*;
use crate::key_line::ed25519_line;

/// Acts like ssh-keygen for the two invocations banger makes: generation writes a
/// private key file holding a seed byte, and `-y` turns that seed into a public key.
#[derive(Debug, Default)]
struct FakeKeygen {
    calls: Mutex<Vec<String>>,
    next_seed: AtomicU8,
    fail: bool,
    /// Holds each generation until this many are under way, so concurrent callers all
    /// generate and then race to publish.
    generations_together: Option<tokio::sync::Barrier>,
}

impl FakeKeygen {
    fn generations(&self) -> usize {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.contains(" -t ed25519 ")).count()
    }

    fn respond(&self, cmd: &Cmd) -> Result<CmdOutput, ExecError> {
        let args: Vec<String> = cmd
            .get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        self.calls.lock().unwrap().push(cmd.display());
        assert_eq!(cmd.program(), "ssh-keygen");
        let file = PathBuf::from(args.last().unwrap());
        if self.fail {
            return Err(ExecError::Failed {
                command: cmd.display(),
                status: "exit code 1".into(),
                code: Some(1),
                stdout: Vec::new(),
                stderr: "boom".into(),
            });
        }
        if args.contains(&"-y".to_string()) {
            let seed = std::fs::read(&file).unwrap()[0];
            let line = ed25519_line([seed; 32], KEY_COMMENT);
            return Ok(CmdOutput {
                stdout: format!("{line}\n").into_bytes(),
                stderr: Vec::new(),
            });
        }
        assert_eq!(
            args[..args.len() - 1],
            ["-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f"]
        );
        let seed = self.next_seed.fetch_add(1, Ordering::SeqCst) + 1;
        std::fs::write(&file, [seed]).unwrap();
        let mut public = file.into_os_string();
        public.push(".pub");
        std::fs::write(public, ed25519_line([seed; 32], KEY_COMMENT) + "\n").unwrap();
        Ok(CmdOutput::default())
    }
}

impl CommandRunner for FakeKeygen {
    fn run<'a>(
        &'a self,
        cmd: &'a Cmd,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<CmdOutput, ExecError>> + Send + 'a>> {
        Box::pin(async move {
            let generating = cmd.get_args().iter().any(|a| a == "-t");
            if let (true, Some(barrier)) = (generating, &self.generations_together) {
                barrier.wait().await;
            }
            self.respond(cmd)
        })
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn first_use_creates_a_private_pair() {
    let config = tempfile::tempdir().unwrap();
    let keygen = FakeKeygen::default();
    let keypair = Keypair::ensure(config.path(), &keygen).await.unwrap();
    let paths = SshPaths::new(config.path());
    assert_eq!(keypair.private_key_file(), paths.identity_file);
    assert_eq!(keypair.public_key_file(), paths.public_key_file);
    assert_eq!(keypair.public_key(), ed25519_line([1; 32], "banger"));
    assert_eq!(
        std::fs::read_to_string(&paths.public_key_file).unwrap(),
        keypair.public_key() + "\n"
    );
    assert_eq!(mode(&paths.dir), 0o700);
    assert_eq!(mode(&paths.identity_file), 0o600);
    assert_eq!(mode(&paths.public_key_file), 0o644);
    assert_eq!(entries(&paths.dir), ["id_ed25519", "id_ed25519.pub"]);
}

#[tokio::test]
async fn second_use_reuses_the_key() {
    let config = tempfile::tempdir().unwrap();
    let keygen = FakeKeygen::default();
    let first = Keypair::ensure(config.path(), &keygen).await.unwrap();
    let second = Keypair::ensure(config.path(), &keygen).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(keygen.generations(), 1);
}

#[tokio::test]
async fn missing_or_stale_public_key_is_rewritten() {
    let config = tempfile::tempdir().unwrap();
    let keygen = FakeKeygen::default();
    let keypair = Keypair::ensure(config.path(), &keygen).await.unwrap();
    let public_key_file = keypair.public_key_file().to_path_buf();
    for damage in [None, Some("ssh-ed25519 AAAAstale other\n")] {
        match damage {
            None => std::fs::remove_file(&public_key_file).unwrap(),
            Some(text) => std::fs::write(&public_key_file, text).unwrap(),
        }
        let again = Keypair::ensure(config.path(), &keygen).await.unwrap();
        assert_eq!(again, keypair, "{damage:?}");
        assert_eq!(
            std::fs::read_to_string(&public_key_file).unwrap(),
            keypair.public_key() + "\n"
        );
    }
    assert_eq!(keygen.generations(), 1);
}

#[tokio::test]
async fn loose_permissions_are_tightened() {
    let config = tempfile::tempdir().unwrap();
    let keygen = FakeKeygen::default();
    let keypair = Keypair::ensure(config.path(), &keygen).await.unwrap();
    let ssh_dir = keypair.private_key_file().parent().unwrap().to_path_buf();
    std::fs::set_permissions(
        keypair.private_key_file(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    Keypair::ensure(config.path(), &keygen).await.unwrap();
    assert_eq!(mode(keypair.private_key_file()), 0o600);
    assert_eq!(mode(&ssh_dir), 0o700);
}

#[tokio::test]
async fn failed_keygen_leaves_nothing_behind() {
    let config = tempfile::tempdir().unwrap();
    let keygen = FakeKeygen {
        fail: true,
        ..FakeKeygen::default()
    };
    let err = Keypair::ensure(config.path(), &keygen).await.unwrap_err();
    assert!(matches!(err, SshError::Keygen { .. }), "{err:?}");
    assert_eq!(err.to_string(), "cannot generate banger's ssh key");
    assert!(entries(&config.path().join("ssh")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_uses_agree_on_one_key() {
    const CALLERS: usize = 16;
    let config = tempfile::tempdir().unwrap();
    let keygen = Arc::new(FakeKeygen {
        generations_together: Some(tokio::sync::Barrier::new(CALLERS)),
        ..FakeKeygen::default()
    });
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let dir = config.path().to_path_buf();
            let keygen = keygen.clone();
            tokio::spawn(async move { Keypair::ensure(&dir, keygen.as_ref()).await })
        })
        .collect();
    let mut keys = Vec::new();
    for task in tasks {
        keys.push(task.await.unwrap().unwrap().public_key());
    }
    assert_eq!(
        keygen.generations(),
        CALLERS,
        "every caller raced to generate"
    );
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 1, "all callers use the same key: {keys:?}");
    let ssh_dir = config.path().join("ssh");
    assert_eq!(entries(&ssh_dir), ["id_ed25519", "id_ed25519.pub"]);
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("id_ed25519.pub")).unwrap(),
        keys[0].clone() + "\n"
    );
}
