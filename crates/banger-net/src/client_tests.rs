//! Tests of the client against a scripted helper on a real Unix socket: framing, the
//! descriptor riding on `open_tap`'s reply, typed refusals, and every way an exchange can
//! go wrong. The real helper is exercised in banger-helper's `tests/netns.rs`.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixListener;
use std::thread::JoinHandle;

use banger_sys::fdpass::send_with_fd;

/// What the scripted helper does with one connection.
enum Script {
    /// Reply with this line (newline added) and, if set, a pipe whose other end holds
    /// these bytes.
    Reply(String, Option<&'static [u8]>),
    /// Read the request, then hang up.
    HangUp,
    /// Read the request, then wait until the client goes away.
    Silent,
}

struct ScriptedHelper {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl ScriptedHelper {
    fn start(scripts: Vec<Script>) -> ScriptedHelper {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("helper.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let thread = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for script in scripts {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                requests.push(line.trim_end().to_owned());
                match script {
                    Script::Reply(reply, payload) => {
                        let reply = format!("{reply}\n");
                        match payload {
                            Some(bytes) => {
                                let (read_end, write_end) = nix::unistd::pipe().unwrap();
                                std::fs::File::from(write_end).write_all(bytes).unwrap();
                                send_with_fd(
                                    stream.as_fd(),
                                    reply.as_bytes(),
                                    Some(read_end.as_fd()),
                                )
                                .unwrap();
                            }
                            None => send_with_fd(stream.as_fd(), reply.as_bytes(), None).unwrap(),
                        }
                    }
                    Script::HangUp => drop(stream),
                    Script::Silent => {
                        // Returns when the client closes its end.
                        let _ = reader.read_to_end(&mut Vec::new());
                    }
                }
            }
            requests
        });
        ScriptedHelper {
            _dir: dir,
            socket,
            thread: Some(thread),
        }
    }

    fn client(&self) -> HelperClient {
        HelperClient::unix(&self.socket)
    }

    fn requests(mut self) -> Vec<String> {
        self.thread.take().unwrap().join().unwrap()
    }
}

#[tokio::test]
async fn open_tap_receives_the_descriptor() {
    let helper = ScriptedHelper::start(vec![Script::Reply(
        r#"{"ok":{"outcome":"tap_opened","name":"bgt-01234567"}}"#.into(),
        Some(b"frames"),
    )]);
    let fd = helper.client().open_tap("bgt-01234567").await.unwrap();
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).unwrap();
    assert_eq!(text, "frames");
    assert_eq!(
        helper.requests(),
        [r#"{"op":"open_tap","name":"bgt-01234567"}"#]
    );
}

#[tokio::test]
async fn typed_calls_send_typed_requests() {
    let done = || Script::Reply(r#"{"ok":{"outcome":"done"}}"#.into(), None);
    let helper = ScriptedHelper::start(vec![
        done(),
        done(),
        done(),
        Script::Reply(
            r#"{"ok":{"outcome":"hello","version":3,"bridge":"banger0","subnet":"172.30.0.0/24","gateway":"172.30.0.1"}}"#.into(),
            None,
        ),
    ]);
    let client = helper.client();
    client.add_nat("172.30.0.2".parse().unwrap()).await.unwrap();
    client.create_tap("bgt-01234567").await.unwrap();
    client
        .remove_nat("172.30.0.2".parse().unwrap())
        .await
        .unwrap();
    let info = client.hello().await.unwrap();
    assert_eq!(info.gateway.to_string(), "172.30.0.1");
    assert_eq!(info.subnet.to_string(), "172.30.0.0/24");
    assert_eq!(
        helper.requests(),
        [
            r#"{"op":"add_nat","guest_ip":"172.30.0.2"}"#,
            r#"{"op":"create_tap","name":"bgt-01234567"}"#,
            r#"{"op":"remove_nat","guest_ip":"172.30.0.2"}"#,
            r#"{"op":"hello"}"#,
        ]
    );
}

/// A listing is checked before the daemon acts on it: a helper naming an interface that
/// is not banger's, or an address outside the pool, is not believed.
#[tokio::test]
async fn network_listings_are_checked() {
    let helper = ScriptedHelper::start(vec![
        Script::Reply(
            r#"{"ok":{"outcome":"network","taps":["bgt-01234567"],"nat_guests":["172.30.0.2"]}}"#
                .into(),
            None,
        ),
        Script::Reply(
            r#"{"ok":{"outcome":"network","taps":["eth0"],"nat_guests":[]}}"#.into(),
            None,
        ),
        Script::Reply(
            r#"{"ok":{"outcome":"network","taps":[],"nat_guests":["8.8.8.8"]}}"#.into(),
            None,
        ),
    ]);
    let pool: Ipv4Subnet = "172.30.0.0/24".parse().unwrap();
    let client = helper.client();
    let listing = client.list_network(&pool).await.unwrap();
    assert_eq!(listing.taps, ["bgt-01234567"]);
    assert_eq!(
        listing.nat_guests,
        ["172.30.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    for fragment in ["eth0", "8.8.8.8"] {
        let error = client.list_network(&pool).await.unwrap_err();
        assert!(
            matches!(error, HelperClientError::UnexpectedOutcome { .. }),
            "{error:?}"
        );
        assert!(format!("{error}").contains(fragment), "{error}");
    }
    assert_eq!(helper.requests(), [r#"{"op":"list_network"}"#; 3]);
}

#[tokio::test]
async fn refusals_are_typed() {
    let helper = ScriptedHelper::start(vec![Script::Reply(
        r#"{"err":{"code":"unsupported","op":"setup_dns","reason":"do it by hand"}}"#.into(),
        None,
    )]);
    let error = helper
        .client()
        .setup_dns("banger0", "172.30.0.1".parse().unwrap(), 53)
        .await
        .unwrap_err();
    assert_eq!(
        error.helper_error(),
        Some(&HelperError::Unsupported {
            op: "setup_dns".into(),
            reason: "do it by hand".into()
        })
    );
    assert_eq!(error.to_string(), "banger-helper refused setup_dns");
}

#[tokio::test]
async fn broken_exchanges() {
    let helper = ScriptedHelper::start(vec![
        Script::HangUp,
        Script::Reply("this is not json".into(), None),
        Script::Reply(r#"{"ok":{"outcome":"done"}}"#.into(), None),
        Script::Reply(
            r#"{"ok":{"outcome":"hello","version":99,"bridge":"banger0","subnet":"172.30.0.0/24","gateway":"172.30.0.1"}}"#.into(),
            None,
        ),
        Script::Reply(r#"{"ok":{"outcome":"tap_opened","name":"bgt-1"}}"#.into(), None),
    ]);
    let client = helper.client();
    let cases: Vec<(Result<(), HelperClientError>, &str)> = vec![
        (client.ensure_bridge().await, "closed the connection"),
        (client.ensure_bridge().await, "unreadable reply"),
        (
            client.open_tap("bgt-1").await.map(drop),
            "answered open_tap with Done",
        ),
        (client.hello().await.map(drop), "speaks protocol 99"),
        (client.open_tap("bgt-1").await.map(drop), "no descriptor"),
    ];
    for (result, fragment) in cases {
        let error = result.unwrap_err();
        assert!(error.to_string().contains(fragment), "{error}");
    }
    assert_eq!(helper.requests().len(), 5);
}

#[tokio::test]
async fn an_absent_helper_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let error = HelperClient::unix(dir.path().join("none.sock"))
        .ensure_bridge()
        .await
        .unwrap_err();
    assert!(error.is_unreachable(), "{error}");
}

#[tokio::test]
async fn a_silent_helper_times_out() {
    let helper = ScriptedHelper::start(vec![Script::Silent]);
    let transport = UnixTransport::new(&helper.socket).with_timeout(Duration::from_millis(200));
    let client = HelperClient::new(Arc::new(transport));
    let error = client.ensure_bridge().await.unwrap_err();
    assert!(
        matches!(error, HelperClientError::TimedOut { .. }),
        "{error}"
    );
    drop(client);
    assert_eq!(helper.requests().len(), 1);
}
