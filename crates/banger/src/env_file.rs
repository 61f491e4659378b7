//! env_file: `--env-file FILE` as Docker reads it. One `KEY=VALUE` a line, the value
//! taken as written (quotes are kept, nothing is expanded); blank lines and lines
//! starting with `#` are skipped; a bare `KEY` takes the value the variable has in
//! banger's own environment and is left out when it has none.

/// The variables of an env file's `text`, in file order; `lookup` reads banger's own
/// environment for bare names. Errors name the line.
pub fn parse(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let mut variables = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (line.trim_end(), None),
        };
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(format!(
                "line {number}: {key:?} is not a variable name (write KEY=VALUE)"
            ));
        }
        if let Some(value) = value.or_else(|| lookup(key)) {
            variables.push((key.to_owned(), value));
        }
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_read_as_docker_reads_them() {
        let lookup = |key: &str| (key == "HOST_ONLY").then(|| "from-host".to_owned());
        type Pairs = &'static [(&'static str, &'static str)];
        let table: &[(&str, Result<Pairs, &str>)] = &[
            ("", Ok(&[])),
            ("A=1\nB=two words\n", Ok(&[("A", "1"), ("B", "two words")])),
            ("# comment\n\n   \nA=1", Ok(&[("A", "1")])),
            (
                "Q=\"quoted\"\nE=\nX=a=b",
                Ok(&[("Q", "\"quoted\""), ("E", ""), ("X", "a=b")]),
            ),
            ("  INDENTED=yes", Ok(&[("INDENTED", "yes")])),
            (
                "HOST_ONLY\nUNSET_ON_HOST",
                Ok(&[("HOST_ONLY", "from-host")]),
            ),
            (
                "A=1\n=oops",
                Err("line 2: \"\" is not a variable name (write KEY=VALUE)"),
            ),
            (
                "BAD KEY=1",
                Err("line 1: \"BAD KEY\" is not a variable name (write KEY=VALUE)"),
            ),
        ];
        for (text, want) in table {
            let want = want.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(parse(text, lookup), want.map_err(str::to_owned), "{text:?}");
        }
    }
}
