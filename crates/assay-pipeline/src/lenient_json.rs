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
    let mut attempts = vec![(body.len(), scan.open(scan.open_at_end), scan.in_string_at_end)];
    attempts.extend(scan.cuts.iter().rev().take(16).map(|&(at, open)| (at, scan.open(open), false)));
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

/// Bracket structure of a JSON-ish text starting at an opening bracket. The brackets open at a
/// point are a node of a tree of every opening bracket (its parent: the bracket open around
/// it), so that recording them at each cut costs one index, not a copy of the stack (which
/// made deeply nested text quadratic in time and memory).
struct Scan {
    /// Byte offset just past the bracket closing the first one, if it closes.
    complete_at: Option<usize>,
    /// Offsets just past each inner closing bracket, with the innermost bracket still open there.
    cuts: Vec<(usize, Option<usize>)>,
    open_at_end: Option<usize>,
    in_string_at_end: bool,
    /// Every opening bracket: the character and the index of the bracket open around it.
    brackets: Vec<(char, Option<usize>)>,
}

impl Scan {
    fn of(text: &str) -> Self {
        let mut brackets: Vec<(char, Option<usize>)> = Vec::new();
        let mut open = None;
        let mut cuts = Vec::new();
        let mut strings = StringState::default();
        for (i, c) in text.char_indices() {
            if strings.inside_after(c) {
                continue;
            }
            match c {
                '[' | '{' => {
                    brackets.push((c, open));
                    open = Some(brackets.len() - 1);
                }
                ']' | '}' => {
                    open = open.and_then(|b| brackets[b].1);
                    if open.is_none() {
                        return Self { complete_at: Some(i + 1), cuts, open_at_end: None, in_string_at_end: false, brackets };
                    }
                    cuts.push((i + 1, open));
                }
                _ => {}
            }
        }
        Self { complete_at: None, cuts, open_at_end: open, in_string_at_end: strings.inside, brackets }
    }

    /// The brackets open from `innermost` outwards, outermost first.
    fn open(&self, innermost: Option<usize>) -> Vec<char> {
        let mut open: Vec<char> = std::iter::successors(innermost, |&b| self.brackets[b].1).map(|b| self.brackets[b].0).collect();
        open.reverse();
        open
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

/// Whatever a model writes, reading the first JSON value from it returns a value or `None`,
/// never panics, and does not take time out of proportion to the text.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() }
    }

    /// What is found is an array or an object: the text is read from its first bracket.
    fn read(text: &str) -> Option<Value> {
        let found = first_json_value(text);
        if let Some(v) = &found {
            assert!(v.is_array() || v.is_object(), "{v} from {text:?}");
        }
        found
    }

    /// Pieces of JSON, of the prose and fences around it, escapes and multi-byte characters.
    fn fragment() -> impl Strategy<Value = String> {
        let pieces = vec![
            "{",
            "}",
            "[",
            "]",
            "\"",
            ",",
            ":",
            "\\",
            "\\\"",
            "\\\\",
            "\\u",
            "\\ud83d",
            "\\n",
            " ",
            "\n",
            "\t",
            "```",
            "```json\n",
            "\n```",
            "null",
            "true",
            "1",
            "-2.5e3",
            "\"a\"",
            "\"key\": ",
            "Sure! Here it is:",
            "é",
            "\u{1f600}",
            "\u{feff}",
            "\u{0}",
            "]}",
            "{\"",
            "[{",
            ",]",
            ",}",
        ];
        prop_oneof![6 => prop::sample::select(pieces).prop_map(String::from), 1 => any::<String>()]
    }

    fn fragments(most: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(fragment(), 0..most).prop_map(|f| f.concat())
    }

    /// JSON values without floats (whose text may not read back bit for bit).
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), any::<i64>().prop_map(Value::from), any::<String>().prop_map(Value::String)];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn container() -> impl Strategy<Value = Value> {
        json_value().prop_filter("an array or an object", |v| v.is_array() || v.is_object())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn lenient_json_never_panics_on_arbitrary_strings(text in any::<String>()) {
            read(&text);
        }

        #[test]
        fn lenient_json_never_panics_on_json_fragments(text in fragments(64)) {
            read(&text);
        }

        #[test]
        fn bracket_scan_equals_a_plain_stack(text in fragments(64)) {
            // The brackets open at each cut and at the end, as a stack copied at each step
            // finds them (the scan's former, quadratic form).
            let Some(start) = text.find(['[', '{']) else { return Ok(()) };
            let text = &text[start..];
            let scan = Scan::of(text);
            let (mut open, mut cuts, mut complete_at, mut strings) = (Vec::new(), Vec::new(), None, StringState::default());
            for (i, c) in text.char_indices() {
                if strings.inside_after(c) {
                    continue;
                }
                match c {
                    '[' | '{' => open.push(c),
                    ']' | '}' => {
                        open.pop();
                        if open.is_empty() {
                            complete_at = Some(i + 1);
                            break;
                        }
                        cuts.push((i + 1, open.clone()));
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(scan.complete_at, complete_at);
            prop_assert_eq!(scan.cuts.iter().map(|&(at, b)| (at, scan.open(b))).collect::<Vec<_>>(), cuts);
            if complete_at.is_none() {
                prop_assert_eq!(scan.open(scan.open_at_end), open);
                prop_assert_eq!(scan.in_string_at_end, strings.inside);
            }
        }

        #[test]
        fn lenient_json_never_panics_on_prefixes_of_json(v in container(), cut in any::<prop::sample::Index>(), prose in fragments(8)) {
            // An answer cut off anywhere (at a character boundary), after some prose.
            let text = format!("{prose}{}", serde_json::to_string_pretty(&v).unwrap());
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            read(&text[..at]);
        }

        #[test]
        fn lenient_json_finds_whole_json_after_prose(v in container(), prose in "[^\\[{]{0,40}", fenced in any::<bool>(), after in fragments(8)) {
            let text = if fenced { format!("{prose}```json\n{v}\n```{after}") } else { format!("{prose}{v}{after}") };
            prop_assert_eq!(read(&text), Some(v));
        }
    }

    #[test]
    fn lenient_json_is_linear_on_deep_nesting() {
        // A model stuck repeating brackets: cut off with every bracket but the first closed,
        // or never closed at all.
        for text in ["[".repeat(50_000) + &"]".repeat(49_999), "{\"a\":[".repeat(25_000), "[{".repeat(25_000) + &"}]".repeat(24_999)] {
            let started = std::time::Instant::now();
            read(&text);
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?} for {} bytes", started.elapsed(), text.len());
        }
    }
}
