//! testing: a recording [`ToolRunner`] for unit tests of the operations. It answers
//! scripted output per exact command line (a queue per command; the last answer repeats)
//! and records every command it was asked to run, so tests assert the command sequence.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::tool::{Tool, ToolError, ToolOutput, ToolRunner};

#[derive(Debug, Clone)]
enum Answer {
    Stdout(String),
    Fail(String),
}

#[derive(Debug, Default)]
pub struct FakeTools {
    answers: Mutex<HashMap<String, Vec<Answer>>>,
    prefix_answers: Vec<(String, Answer)>,
    missing_programs: Vec<&'static str>,
    log: Mutex<Vec<(String, Option<String>)>>,
}

impl FakeTools {
    pub fn new() -> FakeTools {
        FakeTools::default()
    }

    fn push(self, command: &str, answer: Answer) -> FakeTools {
        self.answers
            .lock()
            .unwrap()
            .entry(command.to_owned())
            .or_default()
            .push(answer);
        self
    }

    /// `command` succeeds printing `stdout` (queued after earlier answers).
    pub fn reply(self, command: &str, stdout: &str) -> FakeTools {
        self.push(command, Answer::Stdout(stdout.to_owned()))
    }

    /// Any command starting with `prefix` (and without an exact answer) prints `stdout`.
    #[allow(dead_code, reason = "kept for operation tests that need it")]
    pub fn reply_prefix(mut self, prefix: &str, stdout: &str) -> FakeTools {
        self.prefix_answers
            .push((prefix.to_owned(), Answer::Stdout(stdout.to_owned())));
        self
    }

    /// `command` exits 1 with `stderr`.
    pub fn fail(self, command: &str, stderr: &str) -> FakeTools {
        self.push(command, Answer::Fail(stderr.to_owned()))
    }

    /// Every command of `program` fails as not installed.
    pub fn without(mut self, program: &'static str) -> FakeTools {
        self.missing_programs.push(program);
        self
    }

    /// The command lines run so far.
    pub fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// What was fed to stdin of the commands run so far.
    pub fn stdins(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, stdin)| stdin.clone())
            .collect()
    }
}

impl ToolRunner for FakeTools {
    fn run(&self, tool: &Tool) -> Result<ToolOutput, ToolError> {
        let command = tool.display();
        let stdin = tool
            .stdin
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        self.log.lock().unwrap().push((command.clone(), stdin));
        if self.missing_programs.contains(&tool.program) {
            return Err(ToolError::NotFound {
                program: tool.program,
            });
        }
        let answer = {
            let mut answers = self.answers.lock().unwrap();
            match answers.get_mut(&command) {
                Some(queue) if queue.len() > 1 => Some(queue.remove(0)),
                Some(queue) => queue.first().cloned(),
                None => self
                    .prefix_answers
                    .iter()
                    .find(|(prefix, _)| command.starts_with(prefix.as_str()))
                    .map(|(_, answer)| answer.clone()),
            }
        };
        match answer {
            None => Ok(ToolOutput::default()),
            Some(Answer::Stdout(stdout)) => Ok(ToolOutput {
                stdout: stdout.into_bytes(),
                stderr: Vec::new(),
            }),
            Some(Answer::Fail(stderr)) => Err(ToolError::Failed {
                command,
                status: "exit code 1".to_owned(),
                stderr,
            }),
        }
    }
}
