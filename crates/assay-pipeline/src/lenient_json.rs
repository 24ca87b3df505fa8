//! Reading JSON that language models wrote: the first JSON value in the text, with prose or
//! code fences around it, trailing commas, or an answer cut off mid-way (closed where it
//! stopped, or at the last complete element).

use serde_json::Value;

/// The first JSON array or object in `text`, repaired if needed; `None` if there is none.
pub fn first_json_value(text: &str) -> Option<Value> {
    let start = text.find(['[', '{'])?;
    let scan = Scan::of(&text[start..]);
    if let Some(end) = scan.complete_at {
        return parse_relaxed(&text[start..start + end]);
    }
    // Cut off: close what is open, at the end or else at the last complete element.
    let body = &text[start..];
    let mut attempts = vec![(body.len(), scan.open_at_end.clone(), scan.in_string_at_end)];
    attempts.extend(scan.cuts.iter().rev().take(16).map(|(at, open)| (*at, open.clone(), false)));
    attempts.into_iter().find_map(|(at, open, in_string)| {
        let mut fixed = body[..at].trim_end().to_string();
        if in_string {
            fixed.push('"');
        }
        let trimmed = fixed.trim_end_matches([',', ' ', '\n', '\t', '\r']).len();
        fixed.truncate(trimmed);
        if fixed.ends_with(':') {
            fixed.push_str(" null");
        }
        fixed.extend(open.iter().rev().map(|&c| if c == '[' { ']' } else { '}' }));
        parse_relaxed(&fixed)
    })
}

/// Parses after dropping commas that precede a closing bracket (outside strings).
fn parse_relaxed(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    let mut out = String::with_capacity(text.len());
    let mut strings = StringState::default();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !strings.inside_after(c) && c == ',' && chars[i + 1..].iter().find(|c| !c.is_whitespace()).is_some_and(|&n| n == ']' || n == '}') {
            continue;
        }
        out.push(c);
    }
    serde_json::from_str(&out).ok()
}

/// Bracket structure of a JSON-ish text starting at an opening bracket.
struct Scan {
    /// Byte offset just past the bracket closing the first one, if it closes.
    complete_at: Option<usize>,
    /// Offsets just past each inner closing bracket, with the brackets still open there.
    cuts: Vec<(usize, Vec<char>)>,
    open_at_end: Vec<char>,
    in_string_at_end: bool,
}

impl Scan {
    fn of(text: &str) -> Self {
        let mut open = Vec::new();
        let mut cuts = Vec::new();
        let mut strings = StringState::default();
        for (i, c) in text.char_indices() {
            if strings.inside_after(c) {
                continue;
            }
            match c {
                '[' | '{' => open.push(c),
                ']' | '}' => {
                    open.pop();
                    if open.is_empty() {
                        return Self { complete_at: Some(i + 1), cuts, open_at_end: open, in_string_at_end: false };
                    }
                    cuts.push((i + 1, open.clone()));
                }
                _ => {}
            }
        }
        Self { complete_at: None, cuts, open_at_end: open, in_string_at_end: strings.inside }
    }
}

/// Whether a scan is inside a JSON string literal.
#[derive(Default)]
struct StringState {
    inside: bool,
    escaped: bool,
}

impl StringState {
    /// Takes the next character; true when it belongs to a string literal (its quotes included).
    fn inside_after(&mut self, c: char) -> bool {
        if !self.inside {
            self.inside = c == '"';
            return self.inside;
        }
        match (self.escaped, c) {
            (true, _) => self.escaped = false,
            (false, '\\') => self.escaped = true,
            (false, '"') => self.inside = false,
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_clean_fenced_and_sloppy_json() {
        assert_eq!(first_json_value(r#"[{"a": 1}]"#), Some(json!([{"a": 1}])));
        assert_eq!(first_json_value("Sure! ```json\n{\"a\": [1, 2,],}\n``` done"), Some(json!({"a": [1, 2]})));
        assert_eq!(first_json_value("no json here"), None);
    }

    #[test]
    fn closes_answers_cut_off_mid_way() {
        assert_eq!(first_json_value(r#"[{"error": "too long", "severity": "major"}, {"error": "miss"#), Some(json!([{"error": "too long", "severity": "major"}, {"error": "miss"}])));
        assert_eq!(first_json_value(r#"{"question": "Does it cite", "fail_examples": ["#), Some(json!({"question": "Does it cite", "fail_examples": []})));
        assert_eq!(first_json_value(r#"[{"error": "x", "quote":"#), Some(json!([{"error": "x", "quote": null}])));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(first_json_value(r#"[{"error": "uses ] and { in text"}] trailing ]"#), Some(json!([{"error": "uses ] and { in text"}])));
    }
}
