//! The `--json` record of `doctor`: always an array, one element a check.

use banger_doctor::{Check, Status};
use serde::Serialize;

/// One check of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckJson {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// How to fix it; `null` for a passing check.
    pub hint: Option<String>,
}

impl From<&Check> for CheckJson {
    fn from(c: &Check) -> CheckJson {
        CheckJson {
            name: c.name.clone(),
            status: c.status,
            detail: c.detail.clone(),
            hint: c.hint.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Vec<Check> {
        vec![
            Check::pass("kvm", "/dev/kvm is usable"),
            Check::warn("vm dns", "no .vm route", "run banger system install"),
        ]
    }

    #[test]
    fn checks_are_an_array_with_every_key() {
        insta::assert_json_snapshot!(super::super::all::<_, CheckJson>(&sample()));
    }
}
