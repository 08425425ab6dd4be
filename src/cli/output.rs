//! Shared output helpers: sizes, times, JSON, error chains, and the two rules for names.
//!
//! Names (paths, symlink targets, tags, hosts) and any text that comes from a repository or
//! the file system are untrusted: printed raw, a file name can clear the screen, retitle the
//! terminal, fake extra output lines, or reorder what is shown (trojan-source bidi controls).
//! - Human output passes them through [`escape`] (or [`esc`]), as `ls -b` does. Clean names
//!   come out byte for byte; the escaping is injective, so two names never print alike.
//! - JSON output sets them with [`json_name`]: the text itself when it is UTF-8, otherwise the
//!   lossy text plus a `<field>_hex` field holding the exact bytes.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

/// Bidi embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069): they reorder
/// the text around them on screen, so a name could show as something it is not.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_bidi_control(c)
}

/// A name or untrusted text, safe to print on a terminal: `\` becomes `\\`; newline, tab
/// and carriage return `\n`, `\t`, `\r`; every other C0 control and DEL `\xHH`; C1
/// controls and bidi controls `\u{XXXX}`; each byte that is not valid UTF-8 `\xHH` (80–ff,
/// so never confused with an escaped control, 00–1f or 7f). Everything else, including any
/// printable Unicode, is unchanged, so clean names print exactly as before.
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(needs_escape) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if needs_escape(c) => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for a path, an OS string or a string.
pub fn esc<S: AsRef<OsStr> + ?Sized>(s: &S) -> Cow<'_, str> {
    escape(s.as_ref().as_bytes())
}

/// Sets `obj[field]` to a name for JSON: the name itself when it is valid UTF-8 (JSON escapes
/// its control characters); otherwise its lossy form (U+FFFD for each bad sequence) and
/// `obj["<field>_hex"]`, the exact bytes in lowercase hex. The `_hex` field exists only then.
pub fn json_name(obj: &mut serde_json::Value, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => obj[field] = s.into(),
        Err(_) => {
            obj[field] = String::from_utf8_lossy(bytes).into_owned().into();
            obj[format!("{field}_hex")] = hex::encode(bytes).into();
        }
    }
}

/// `1.50 MiB`-style sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Local time `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("@{ns}ns"),
    }
}

/// RFC 3339 with the offset recorded at backup time.
pub fn rfc3339(ns: i64, offset_s: i32) -> String {
    let ts = jiff::Timestamp::from_nanosecond(ns as i128).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let off = jiff::tz::Offset::from_seconds(offset_s).unwrap_or(jiff::tz::Offset::UTC);
    ts.display_with_offset(off).to_string()
}

/// RFC 3339 for a `[seconds, nanoseconds]` file time, in UTC.
pub fn rfc3339_parts(secs: i64, nsec: u32) -> String {
    rfc3339(
        secs.saturating_mul(1_000_000_000)
            .saturating_add(nsec as i64),
        0,
    )
}

/// Prints one JSON value as a line on stdout.
pub fn json_line(v: &serde_json::Value) -> anyhow::Result<()> {
    // Serialized first: serde_json's error would hide the write's error (and with it
    // [`StdoutClosed`]) from the error chain.
    let mut line = serde_json::to_vec(v)?;
    line.push(b'\n');
    let mut out = stdout();
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

/// `a: b: c` from an error and its causes, without repeating a cause already in the message.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// Standard output was closed by its reader (`cairn ls | head`): not a failure of the
/// command, so `main` exits quietly with the command's own outcome unknown to the reader.
/// Only writes through [`stdout`] carry it: a broken pipe anywhere else (an SSH connection
/// that died) stays an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Standard output, locked, whose broken-pipe errors are marked as [`StdoutClosed`].
/// Every command prints through it (the `outln!` macro), never through `println!`, which
/// panics when the reader has gone.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

/// See [`stdout`].
pub struct Stdout(std::io::StdoutLock<'static>);

fn mark_closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(mark_closed)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf).map_err(mark_closed)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(mark_closed)
    }
}

/// `println!` that returns the write's error instead of panicking (see [`stdout`]).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::cli::output::stdout(), $($t)*)
    }};
}
pub(crate) use outln;

/// Files and directories damage makes unrestorable, as `--json` gives them (`check`, `repair
/// packs`): `{"snapshot","path","error"}`, `path` set by [`json_name`].
pub fn affected_json(affected: &[cairn::check::Affected]) -> Vec<serde_json::Value> {
    affected
        .iter()
        .map(|a| {
            let mut v =
                serde_json::json!({"snapshot": a.snapshot.to_hex(), "path": null, "error": a.why});
            json_name(&mut v, "path", a.path.as_os_str().as_bytes());
            v
        })
        .collect()
}

/// The same for people, on stderr under `heading`; nothing when there are none.
pub fn print_affected(heading: &str, affected: &[cairn::check::Affected]) {
    if affected.is_empty() {
        return;
    }
    eprintln!("{heading}");
    for a in affected {
        eprintln!(
            "  snapshot {}: {} ({})",
            a.snapshot.short(),
            esc(&a.path),
            esc(&a.why)
        );
    }
}

/// Whether `e` is, or was caused by, a write to a closed standard output.
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// `rwxr-xr-x` with the type letter in front.
pub fn mode_string(letter: char, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(letter);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (set, special, i) {
            (true, true, 8) => 't',
            (false, true, 8) => 'T',
            (true, true, _) => 's',
            (false, true, _) => 'S',
            (true, false, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

pub use cairn::units::{parse_size, parse_span};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The inverse of [`escape`]: if every output decodes back to its input, no two inputs
    /// share an output.
    fn unescape(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                continue;
            }
            match chars.next() {
                Some('\\') => out.push(b'\\'),
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('r') => out.push(b'\r'),
                Some('x') => {
                    let h: String = chars.by_ref().take(2).collect();
                    out.push(u8::from_str_radix(&h, 16).expect("two hex digits"));
                }
                Some('u') => {
                    assert_eq!(chars.next(), Some('{'));
                    let h: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let c =
                        char::from_u32(u32::from_str_radix(&h, 16).expect("hex")).expect("a char");
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
                other => panic!("stray escape \\{other:?} in {s:?}"),
            }
        }
        out
    }

    /// No C0, DEL, C1 or bidi control: checked here without the code under test.
    fn assert_terminal_safe(out: &str) {
        for c in out.chars() {
            let bidi = matches!(c as u32, 0x202a..=0x202e | 0x2066..=0x2069);
            let control = matches!(c as u32, 0..=0x1f | 0x7f..=0x9f);
            assert!(!control && !bidi, "{c:?} left in {out:?}");
        }
    }

    /// Bytes weighted towards what breaks terminals: controls, backslashes, bidi controls,
    /// C1 controls in UTF-8, stray continuation and lead bytes.
    fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            (0u8..0x20).prop_map(|b| vec![b]),
            Just(b"\\".to_vec()),
            Just(b"\\x1b".to_vec()),
            Just(b"\\u{202e}".to_vec()),
            Just(b"\x7f".to_vec()),
            Just("\u{202e}".as_bytes().to_vec()),
            Just("\u{2066}".as_bytes().to_vec()),
            Just("\u{85}".as_bytes().to_vec()),
            Just("\u{9b}".as_bytes().to_vec()),
            Just("é".as_bytes().to_vec()),
            Just(vec![0xc2]),
            Just(vec![0xe2, 0x80]),
            "[a-z/. ]{1,4}".prop_map(String::into_bytes),
        ];
        prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn escaped_names_hold_no_control_and_decode_back_exactly(bytes in nasty_bytes()) {
            let out = escape(&bytes);
            assert_terminal_safe(&out);
            prop_assert!(!out.bytes().any(|b| b < 0x20 || b == 0x7f));
            prop_assert_eq!(unescape(&out), bytes);
        }

        #[test]
        fn escaping_is_injective_on_pairs(a in nasty_bytes(), b in nasty_bytes()) {
            prop_assert_eq!(a == b, escape(&a) == escape(&b));
        }

        #[test]
        fn clean_names_print_byte_for_byte(s in "[^\\\\\\p{Cc}\u{202a}-\u{202e}\u{2066}-\u{2069}]{0,24}") {
            prop_assert!(matches!(escape(s.as_bytes()), Cow::Borrowed(_)));
            prop_assert_eq!(escape(s.as_bytes()), s.as_str());
        }
    }

    #[test]
    fn each_class_of_control_has_its_escape() {
        let cases: [(&[u8], &str); 12] = [
            (b"a\nb", "a\\nb"),
            (b"a\tb\rc", "a\\tb\\rc"),
            (b"back\\slash", "back\\\\slash"),
            (b"\x1b[2J", "\\x1b[2J"),
            (b"\x1b]0;title\x07", "\\x1b]0;title\\x07"),
            (b"nul\0del\x7f", "nul\\x00del\\x7f"),
            ("c1\u{9b}".as_bytes(), "c1\\u{009b}"),
            ("evil\u{202e}txt.exe".as_bytes(), "evil\\u{202e}txt.exe"),
            ("iso\u{2066}x\u{2069}".as_bytes(), "iso\\u{2066}x\\u{2069}"),
            (b"bad\xff\xfe", "bad\\xff\\xfe"),
            (b"cut\xe2\x80", "cut\\xe2\\x80"),
            (
                "clean: été, 日本, emoji 🎉".as_bytes(),
                "clean: été, 日本, emoji 🎉",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }

    #[test]
    fn names_that_spell_an_escape_print_unlike_the_character_they_spell() {
        let pairs: [(&[u8], &[u8]); 6] = [
            (b"\x1b", b"\\x1b"),
            (b"\xff", b"\\xff"),
            (b"\n", b"\\n"),
            (b"\\", b"\\\\"),
            ("\u{202e}".as_bytes(), b"\\u{202e}"),
            ("\u{9b}".as_bytes(), b"\\u{009b}"),
        ];
        for (real, spelled) in pairs {
            assert_ne!(escape(real), escape(spelled), "{real:?} vs {spelled:?}");
        }
    }

    #[test]
    fn json_names_carry_bytes_only_when_they_are_not_utf8() {
        let mut v = serde_json::json!({});
        json_name(&mut v, "path", "a\nb/é".as_bytes());
        assert_eq!(v, serde_json::json!({"path": "a\nb/é"}));
        let mut v = serde_json::json!({});
        json_name(&mut v, "path", b"/x/\xff\x1b");
        assert_eq!(
            v,
            serde_json::json!({"path": "/x/\u{fffd}\u{1b}", "path_hex": "2f782fff1b"})
        );
    }
}
