//! Human units on the command line and in plan files: sizes (`500M`) and spans (`1h30m`).

use std::time::Duration;

/// `1024`, `500K`, `20M`, `2G`, `1T` (binary units; a trailing `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 500M or 2G"))?;
    if n.is_nan() || n < 0.0 {
        return Err(format!("{s:?} is not a size such as 500M or 2G"));
    }
    Ok((n * mult as f64) as u64)
}

/// `90s`, `20m`, `12h`, `30d`, `2w`, or combinations like `1h30m` (m = minutes).
pub fn parse_span(s: &str) -> Result<Duration, String> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: a number must come before {c:?} (e.g. 26h)"))?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(format!("{s:?}: unknown unit {c:?} (use s, m, h, d, w)")),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !num.is_empty() {
        return Err(format!(
            "{s:?}: the last number has no unit (s, m, h, d, w)"
        ));
    }
    if total == 0 {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_spans_parse() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_span("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_span("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_span("5").is_err());
        assert!(parse_span("0s").is_err());
        assert!(parse_span("3y").is_err());
    }
}
