//! Password lookup in the pgpass file, as libpq does it for replication connections.
//!
//! Example line: `127.0.0.1:5432:replication:lifeboat:s3cret` (`*` matches anything; `\:` and
//! `\\` escape). The file is `PGPASSFILE` or `~/.pgpass`; physical replication matches the
//! database field `replication`.
//!
//! Invariant: like libpq, a file that group or others can read is ignored, so a password never
//! comes from a file another user could have read.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The password for `host:port` and `user`, if the pgpass file has a matching line.
pub fn lookup(host: &str, port: u16, user: &str) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "pgpass file is readable by others; ignored");
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    find(&text, host, &port.to_string(), user)
}

/// The password of the first line of `text` matching host, port, `replication` and user.
pub fn find(text: &str, host: &str, port: &str, user: &str) -> Option<String> {
    let wanted = [host, port, "replication", user];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(split_fields)
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|mut fields| fields.swap_remove(4))
}

/// Splits a line into its five fields, undoing `\` escapes; `None` for a malformed line.
fn split_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next()?),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db.example:5432:replication:other:nope\n\
                    *:5433:*:lifeboat:wrong port\n\
                    /tmp/s\\:ock:*:replication:lifeboat:pa\\:ss:word\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            find(text, "/tmp/s:ock", "5432", "lifeboat").as_deref(),
            Some("pa:ss:word")
        );
        assert_eq!(find(text, "h", "5432", "x").as_deref(), Some("fallback"));
        assert_eq!(find("a:b:c\n", "a", "b", "c"), None);
    }
}
