//! The docs' command lines as the tests read them: the fenced blocks of a Markdown page, each
//! marked `<!-- tested: NAME … -->` (a test runs it) or `<!-- illustrative: NAME … -->` (a
//! test says why it cannot run it) on the line before its fence.

use std::path::Path;

/// A page of the repository, e.g. `README.md` or `docs/operators.md`.
pub fn read_doc(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// How a block is marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Tested,
    Illustrative,
}

/// A fenced block of a page: its language (`sh`), its mark and name if it has one, where it
/// starts (1-based line of the opening fence) and its text.
#[derive(Debug)]
pub struct Block {
    pub lang: String,
    pub mark: Option<(Mark, String)>,
    pub line: usize,
    pub text: String,
}

/// Every fenced block of `doc`, in order.
pub fn blocks(doc: &str) -> Vec<Block> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let mark = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| parse_mark(l));
        let start = i;
        i += 1;
        let mut text = String::new();
        while i < lines.len() && !lines[i].starts_with("```") {
            text.push_str(lines[i]);
            text.push('\n');
            i += 1;
        }
        out.push(Block {
            lang: lang.trim().to_string(),
            mark,
            line: start + 1,
            text,
        });
        i += 1;
    }
    out
}

fn parse_mark(line: &str) -> Option<(Mark, String)> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    let (mark, rest) = if let Some(rest) = inner.strip_prefix("tested:") {
        (Mark::Tested, rest)
    } else {
        (Mark::Illustrative, inner.strip_prefix("illustrative:")?)
    };
    let name = rest.split_whitespace().next()?.to_string();
    Some((mark, name))
}

/// The block marked `NAME` (tested or illustrative).
pub fn block<'a>(blocks: &'a [Block], name: &str) -> &'a Block {
    blocks
        .iter()
        .find(|b| b.mark.as_ref().is_some_and(|(_, n)| n == name))
        .unwrap_or_else(|| panic!("no block is marked {name:?}"))
}

/// The fenced block that follows `<!-- tested: NAME`.
pub fn fenced_after(doc: &str, name: &str) -> String {
    let marker = format!("<!-- tested: {name}");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("the page has no {marker:?}"));
    let mut lines = doc[at..].lines().skip_while(|l| !l.starts_with("```"));
    assert!(lines.next().is_some(), "no fenced block after {marker:?}");
    lines
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `text` with `from` replaced by `to`, which must be there: a page that no longer says what
/// the test replaces fails here rather than testing something else.
pub fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the block no longer has {from:?}:\n{text}"
    );
    text.replace(from, to)
}

/// A line split into the command and its trailing comment (`cmd   # what it does`): the first
/// `#` that starts a word outside quotes. A line that is only a comment is all comment.
pub fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => {
                return (line[..i].trim_end(), Some(line[i + 1..].trim()));
            }
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (line.trim_end(), None)
}

/// The commands of a block, one a line, without blank lines, comment lines and trailing
/// comments (kept beside each command).
pub fn commands(block: &str) -> Vec<(String, Option<String>)> {
    block
        .lines()
        .map(split_comment)
        .filter(|(cmd, _)| !cmd.trim().is_empty())
        .map(|(cmd, comment)| (cmd.trim().to_string(), comment.map(str::to_string)))
        .collect()
}

/// A block written as a terminal session: each `$ COMMAND` line with the lines it prints
/// after it (their trailing comments dropped).
pub fn session(block: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((split_comment(cmd).0.to_string(), Vec::new()));
        } else {
            let last = out
                .last_mut()
                .unwrap_or_else(|| panic!("output before any `$ ` command: {line}"));
            last.1.push(split_comment(line).0.to_string());
        }
    }
    out
}

/// A child that is killed if the test ends first.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `tunnel`, the documented `ssh -N -L LOCAL:…` `line` ready to run, and leave it
/// running; back once LOCAL takes connections.
pub fn start_tunnel(mut tunnel: std::process::Command, line: &str, local: u16) -> KillOnDrop {
    use std::process::Stdio;
    let mut tunnel = KillOnDrop(
        tunnel
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + super::SOON;
    while std::net::TcpStream::connect(("127.0.0.1", local)).is_err() {
        if let Some(st) = tunnel.0.try_wait().unwrap() {
            panic!("{line} exited with {st}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{line}: no forward on {local}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    tunnel
}

/// Send `payload` through the forward on LOCAL to an echo server and see it come back.
pub fn echo_through(local: u16, payload: &[u8], line: &str) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    conn.set_read_timeout(Some(super::SOON)).unwrap();
    conn.write_all(payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(back, payload, "{line}");
}
