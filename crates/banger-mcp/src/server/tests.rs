//! The loop driven over in-memory pipes with a fake handler: handshake, listing, calls,
//! protocol errors (the server keeps serving after each), cancellation, progress and
//! cleanup at end of input.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

use super::*;
use crate::protocol::{Annotations, Tool};

#[derive(Default)]
struct Fake {
    cleaned_up: AtomicBool,
    client: Mutex<String>,
}

impl Handler for Fake {
    fn tools(&self) -> Vec<Tool> {
        ["echo", "slow", "typed"]
            .into_iter()
            .map(|name| Tool {
                name,
                title: name,
                description: "test",
                input_schema: json!({"type": "object"}),
                output_schema: json!({"type": "object"}),
                annotations: Annotations {
                    read_only_hint: true,
                    destructive_hint: false,
                    idempotent_hint: true,
                    open_world_hint: false,
                },
            })
            .collect()
    }

    fn initialized(&self, client: &ClientInfo) {
        *self.client.lock().unwrap() = client.name.clone();
    }

    async fn call(
        self: Arc<Self>,
        name: String,
        arguments: Value,
        ctx: CallCtx,
    ) -> Result<ToolResult, CallError> {
        {
            match name.as_str() {
                "echo" => {
                    ctx.progress.report("echoing");
                    Ok(ToolResult::Ok(arguments))
                }
                "typed" => match arguments.get("n").and_then(Value::as_u64) {
                    Some(n) => Ok(ToolResult::Ok(json!({"n": n}))),
                    None => Err(CallError::InvalidParams("n: expected an integer".into())),
                },
                "slow" => {
                    ctx.cancel.cancelled().await;
                    self.cleaned_up.store(true, Ordering::SeqCst);
                    Ok(ToolResult::failed("cancelled", None))
                }
                _ => Err(CallError::UnknownTool(name)),
            }
        }
    }
}

struct Client {
    input: DuplexStream,
    output: Lines<BufReader<DuplexStream>>,
}

impl Client {
    async fn send(&mut self, line: &str) {
        self.input.write_all(line.as_bytes()).await.unwrap();
        self.input.write_all(b"\n").await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.output.next_line())
            .await
            .expect("an answer within 10 s")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line).unwrap()
    }
}

fn start(handler: Arc<Fake>) -> (Client, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (input, server_in) = tokio::io::duplex(1 << 20);
    let (server_out, output) = tokio::io::duplex(1 << 20);
    let info = ServerInfo {
        name: "test".into(),
        version: "0".into(),
        instructions: "none".into(),
        max_message_bytes: 1024,
        shutdown_grace: Duration::from_secs(5),
    };
    let task =
        tokio::task::spawn_local(serve(BufReader::new(server_in), server_out, handler, info));
    (
        Client {
            input,
            output: BufReader::new(output).lines(),
        },
        task,
    )
}

#[tokio::test]
async fn handshake_list_and_call() {
    tokio::task::LocalSet::new()
        .run_until(async move {
    let fake = Arc::new(Fake::default());
    let (mut c, _task) = start(Arc::clone(&fake));
    c.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"scripted","version":"1"}}}"#).await;
    let init = c.recv().await;
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(
        init["result"]["capabilities"]["tools"]["listChanged"],
        false
    );
    assert_eq!(*fake.client.lock().unwrap(), "scripted");
    c.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    c.send(r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#)
        .await;
    let list = c.recv().await;
    assert_eq!(list["id"], "l");
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 3);
    c.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"a":1},"_meta":{"progressToken":"t"}}}"#).await;
    let progress = c.recv().await;
    assert_eq!(progress["method"], "notifications/progress");
    assert_eq!(progress["params"]["progressToken"], "t");
    assert_eq!(progress["params"]["progress"], 1);
    let answer = c.recv().await;
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["result"]["structuredContent"], json!({"a": 1}));
    assert_eq!(answer["result"]["isError"], false);
        })
        .await;
}

#[tokio::test]
async fn protocol_errors_are_answered_and_the_server_keeps_serving() {
    tokio::task::LocalSet::new()
        .run_until(async move {
    let (mut c, _task) = start(Arc::new(Fake::default()));
    let cases: &[(&str, Value, i64)] = &[
        ("{oops", Value::Null, code::PARSE_ERROR),
        (r#"[1,2]"#, Value::Null, code::INVALID_REQUEST),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"nope"}"#,
            json!(3),
            code::METHOD_NOT_FOUND,
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"missing"}}"#,
            json!(4),
            code::INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"typed","arguments":{"n":"x"}}}"#,
            json!(5),
            code::INVALID_PARAMS,
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":[1]}}"#,
            json!(6),
            code::INVALID_PARAMS,
        ),
    ];
    for (line, id, expected) in cases {
        c.send(line).await;
        let answer = c.recv().await;
        assert_eq!(&answer["id"], id, "{line}");
        assert_eq!(answer["error"]["code"], *expected, "{line}: {answer}");
        c.send(r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#)
            .await;
        assert_eq!(c.recv().await["result"], json!({}), "ping after {line}");
    }
    // Oversized: skipped whole, answered, and the next line is read normally.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":"{}"}}}}}}"#,
        "a".repeat(5000)
    );
    c.send(&big).await;
    let answer = c.recv().await;
    assert_eq!(answer["error"]["code"], code::INVALID_REQUEST);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 1024")
    );
    c.send(r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"typed","arguments":{"n":2}}}"#).await;
    assert_eq!(c.recv().await["result"]["structuredContent"]["n"], 2);
        })
        .await;
}

#[tokio::test]
async fn cancellation_fires_the_call_and_suppresses_its_answer() {
    tokio::task::LocalSet::new()
        .run_until(async move {
    let fake = Arc::new(Fake::default());
    let (mut c, _task) = start(Arc::clone(&fake));
    c.send(r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"slow"}}"#)
        .await;
    // The loop serves other requests while the call runs.
    c.send(r#"{"jsonrpc":"2.0","id":11,"method":"ping"}"#).await;
    assert_eq!(c.recv().await["id"], 11);
    c.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":10,"reason":"user"}}"#).await;
    c.send(r#"{"jsonrpc":"2.0","id":12,"method":"ping"}"#).await;
    // The next line is the ping's answer: the cancelled call is never answered.
    assert_eq!(c.recv().await["id"], 12);
    for _ in 0..100 {
        if fake.cleaned_up.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cancelled call did not run its cleanup");
        })
        .await;
}

#[tokio::test]
async fn end_of_input_cancels_running_calls_and_waits_for_them() {
    tokio::task::LocalSet::new()
        .run_until(async move {
            let fake = Arc::new(Fake::default());
            let (mut c, task) = start(Arc::clone(&fake));
            c.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}"#)
                .await;
            c.send(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#).await;
            assert_eq!(c.recv().await["id"], 2);
            drop(c.input);
            task.await.unwrap().unwrap();
            assert!(fake.cleaned_up.load(Ordering::SeqCst));
        })
        .await;
}
