//! Reading dataset files (JSONL, or CSV with a header row) into items, with a field map for
//! files whose names differ (`input=prompt,id=key`). Errors name the line. Fields that no item
//! field is mapped to are kept in the item's metadata, so nothing in the file is lost.

use crate::NewItem;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasetFileError {
    #[error("line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("the file has no items")]
    Empty,
    #[error("field map: {0}")]
    Map(String),
    #[error("{0}")]
    Format(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    /// From the file's extension: .jsonl/.ndjson or .csv.
    pub fn of_path(path: &Path) -> Result<Self, DatasetFileError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "ndjson") => Ok(Self::Jsonl),
            Some("csv") => Ok(Self::Csv),
            _ => Err(DatasetFileError::Format(format!("cannot tell the format of {}: name it .jsonl or .csv", path.display()))),
        }
    }
}

/// The item fields, in the order `FieldMap` holds their source names.
const FIELDS: [&str; 6] = ["id", "input", "output", "context", "reference", "metadata"];

/// Which field (JSONL key or CSV column) of the file each item field is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMap {
    sources: [String; 6],
}

impl Default for FieldMap {
    /// Each item field from the file field of the same name.
    fn default() -> Self {
        Self { sources: FIELDS.map(String::from) }
    }
}

impl FieldMap {
    /// Parses `field=source,...` (fields: id, input, output, context, reference, metadata);
    /// fields not named keep their own name.
    pub fn parse(spec: &str) -> Result<Self, DatasetFileError> {
        let mut map = Self::default();
        let mut seen = HashSet::new();
        for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (field, source) = pair.split_once('=').ok_or_else(|| DatasetFileError::Map(format!("'{pair}' is not field=column")))?;
            let (field, source) = (field.trim(), source.trim());
            let slot = FIELDS.iter().position(|f| *f == field).ok_or_else(|| DatasetFileError::Map(format!("unknown item field '{field}' (fields: {})", FIELDS.join(", "))))?;
            if source.is_empty() || !seen.insert(field) {
                return Err(DatasetFileError::Map(format!("'{pair}': empty column name or field mapped twice")));
            }
            map.sources[slot] = source.to_string();
        }
        Ok(map)
    }

    fn source(&self, field: &str) -> &str {
        &self.sources[FIELDS.iter().position(|f| *f == field).expect("a known field")]
    }
}

/// Reads every item of a file's text; all or nothing.
pub fn read_items(text: &str, format: Format, map: &FieldMap) -> Result<Vec<NewItem>, DatasetFileError> {
    // Excel and PowerShell start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows = match format {
        Format::Jsonl => jsonl_rows(text)?,
        Format::Csv => csv_rows(text, map)?,
    };
    let mut items = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    for (position, (line, row)) in rows.into_iter().enumerate() {
        let item = to_item(row, map, position + 1).map_err(|reason| DatasetFileError::Line { line, reason })?;
        if !seen.insert(item.key.clone()) {
            return Err(DatasetFileError::Line { line, reason: format!("duplicate item id '{}'", item.key) });
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(DatasetFileError::Empty);
    }
    Ok(items)
}

/// One row of the file with the line it starts on.
type NumberedRow = (u64, Map<String, Value>);

/// Each non-blank line as (line number, object).
fn jsonl_rows(text: &str) -> Result<Vec<NumberedRow>, DatasetFileError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i as u64 + 1;
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(row)) => rows.push((line_no, row)),
            Ok(other) => return Err(DatasetFileError::Line { line: line_no, reason: format!("expected a JSON object, found {}", kind(&other)) }),
            Err(e) => return Err(DatasetFileError::Line { line: line_no, reason: format!("invalid JSON: {e}") }),
        }
    }
    Ok(rows)
}

/// Each record as (line number, column -> text); empty cells are absent.
fn csv_rows(text: &str, map: &FieldMap) -> Result<Vec<NumberedRow>, DatasetFileError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let line_of = |e: &csv::Error| e.position().map_or(1, |p| p.line());
    let header: Vec<String> = reader.headers().map_err(|e| DatasetFileError::Line { line: line_of(&e), reason: e.to_string() })?.iter().map(String::from).collect();
    for field in ["id", "input", "output", "context"] {
        let source = map.source(field);
        let required = field == "input" || source != field;
        if required && !header.iter().any(|h| h == source) {
            return Err(DatasetFileError::Format(format!("no column '{source}' for the item's {field} (columns: {})", header.join(", "))));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| DatasetFileError::Line { line: line_of(&e), reason: e.to_string() })?;
        let line = record.position().map_or(0, |p| p.line());
        let row = header.iter().zip(record.iter()).filter(|(_, cell)| !cell.is_empty()).map(|(h, cell)| (h.clone(), Value::String(cell.to_string()))).collect();
        rows.push((line, row));
    }
    Ok(rows)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A text field: strings as they are, numbers and booleans written out (ids are often
/// numbers), null and "" as absent.
fn text_field(row: &mut Map<String, Value>, source: &str, field: &str) -> Result<Option<String>, String> {
    match row.remove(source) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(v) => Err(format!("'{source}' (the item's {field}) must be text, not {}", kind(&v))),
    }
}

fn to_item(mut row: Map<String, Value>, map: &FieldMap, position: usize) -> Result<NewItem, String> {
    let key = text_field(&mut row, map.source("id"), "id")?.unwrap_or_else(|| position.to_string());
    let input = text_field(&mut row, map.source("input"), "input")?.filter(|s| !s.trim().is_empty());
    let input = input.ok_or_else(|| format!("missing or blank '{}' (the item's input)", map.source("input")))?;
    let output = text_field(&mut row, map.source("output"), "output")?;
    let context = text_field(&mut row, map.source("context"), "context")?;
    let reference = row.remove(map.source("reference")).filter(|v| !v.is_null());
    let mut metadata = match row.remove(map.source("metadata")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(v) => return Err(format!("'{}' (the item's metadata) must be an object, not {}", map.source("metadata"), kind(&v))),
    };
    for (k, v) in row {
        metadata.entry(k).or_insert(v);
    }
    let metadata = (!metadata.is_empty()).then_some(Value::Object(metadata));
    Ok(NewItem { key, input, output, context, reference, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonl_with_a_map_keeps_unmapped_fields_as_metadata() {
        let text = "{\"key\": 1000, \"prompt\": \"Write a poem\", \"instruction_id_list\": [\"punctuation:no_comma\"]}\n\n{\"key\": 1001, \"prompt\": \"Say hi\", \"response\": \"hi\", \"metadata\": {\"lang\": \"en\"}}\n";
        let map = FieldMap::parse("id=key, input=prompt,output=response").unwrap();
        let items = read_items(text, Format::Jsonl, &map).unwrap();
        assert_eq!(items[0], NewItem { key: "1000".into(), input: "Write a poem".into(), metadata: Some(json!({"instruction_id_list": ["punctuation:no_comma"]})), ..Default::default() });
        assert_eq!((items[1].output.as_deref(), &items[1].metadata), (Some("hi"), &Some(json!({"lang": "en"}))));
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let good = "{\"id\": \"a\", \"input\": \"q\"}";
        let cases = [
            (format!("{good}\n\n{{not json\n"), 3, "invalid JSON"),
            (format!("{good}\n[1, 2]\n"), 2, "expected a JSON object"),
            (format!("{good}\n{{\"id\": \"b\"}}\n"), 2, "missing or blank 'input'"),
            (format!("{good}\n{good}\n"), 2, "duplicate item id 'a'"),
            (format!("{good}\n{{\"id\": \"b\", \"input\": \"q\", \"output\": [1]}}\n"), 2, "must be text"),
        ];
        for (text, line, reason) in cases {
            match read_items(&text, Format::Jsonl, &FieldMap::default()) {
                Err(DatasetFileError::Line { line: l, reason: r }) if l == line && r.contains(reason) => {}
                other => panic!("expected line {line} {reason:?}, got {other:?}"),
            }
        }
        assert_eq!(read_items("\n \n", Format::Jsonl, &FieldMap::default()), Err(DatasetFileError::Empty));
    }

    #[test]
    fn csv_with_quoted_newlines_and_positions_as_ids() {
        let text = "question,answer,source\n\"What is\nthe dose?\",\"5 mg\",site\nSecond?,,\n";
        let items = read_items(text, Format::Csv, &FieldMap::parse("input=question,output=answer").unwrap()).unwrap();
        assert_eq!(items[0], NewItem { key: "1".into(), input: "What is\nthe dose?".into(), output: Some("5 mg".into()), metadata: Some(json!({"source": "site"})), ..Default::default() });
        assert_eq!(items[1], NewItem { key: "2".into(), input: "Second?".into(), ..Default::default() });
        let missing = read_items(text, Format::Csv, &FieldMap::default()).unwrap_err();
        assert!(missing.to_string().contains("no column 'input'") && missing.to_string().contains("question, answer, source"), "{missing}");
        let ragged = read_items("input,output\na,b\nc\n", Format::Csv, &FieldMap::default()).unwrap_err();
        assert!(matches!(ragged, DatasetFileError::Line { line: 3, .. }), "{ragged:?}");
        assert_eq!(read_items("input,output\n", Format::Csv, &FieldMap::default()), Err(DatasetFileError::Empty));
    }

    #[test]
    fn maps_and_formats_are_checked() {
        assert!(FieldMap::parse("inputs=prompt").is_err());
        assert!(FieldMap::parse("input").is_err());
        assert!(FieldMap::parse("input=a,input=b").is_err());
        assert_eq!(FieldMap::parse("").unwrap(), FieldMap::default());
        assert_eq!(Format::of_path(Path::new("x.CSV")).unwrap(), Format::Csv);
        assert!(Format::of_path(Path::new("x.txt")).is_err());
    }
}

/// Whatever text a dataset file holds (JSONL or CSV, with or without a field map), reading it
/// gives items or a typed error, never a panic; errors name a line from 1 (the server reports
/// `items[line - 1]`), and what is read has unique ids and non-blank inputs.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() }
    }

    fn check(text: &str, format: Format, map: &FieldMap) {
        match read_items(text, format, map) {
            Ok(items) => {
                let mut keys = HashSet::new();
                assert!(!items.is_empty());
                for item in &items {
                    assert!(!item.input.trim().is_empty() && keys.insert(&item.key), "{item:?}");
                }
            }
            Err(DatasetFileError::Line { line, reason }) => assert!(line >= 1 && !reason.is_empty(), "line {line}: {reason}"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    const COLUMNS: [&str; 12] = ["id", "input", "output", "context", "reference", "metadata", "prompt", "answer", "key", "", " input", "input "];

    fn column() -> impl Strategy<Value = String> {
        prop_oneof![4 => prop::sample::select(COLUMNS.to_vec()).prop_map(String::from), 1 => any::<String>()]
    }

    /// `field=source,...` specs: known and unknown fields, known and odd sources, bad pairs.
    fn map_spec() -> impl Strategy<Value = String> {
        let field = prop_oneof![4 => prop::sample::select(FIELDS.to_vec()).prop_map(String::from), 1 => any::<String>()];
        let pair = prop_oneof![8 => (field, column()).prop_map(|(f, c)| format!("{f}={c}")), 1 => any::<String>()];
        prop::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join(","))
    }

    /// The default map or a parsed one (a spec that does not parse leaves the default).
    fn field_map() -> impl Strategy<Value = FieldMap> {
        prop_oneof![Just(FieldMap::default()), map_spec().prop_map(|spec| FieldMap::parse(&spec).unwrap_or_default())]
    }

    /// Pieces of JSON and CSV syntax, line ends, byte-order marks and odd characters.
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
            "\\u",
            "\\ud800",
            "\n",
            "\r\n",
            "\r",
            "\u{feff}",
            " ",
            "\t",
            "null",
            "true",
            "1",
            "-0.5e3",
            "1e999",
            "\"id\"",
            "\"input\"",
            "\"output\"",
            "\"metadata\"",
            "\"reference\"",
            "\"context\"",
            "id",
            "input",
            "output",
            "prompt",
            "\"\"",
            "\0",
            "é",
            "\u{fffd}",
            "\u{2028}",
            "a,b",
            "\"a\"\"b\"",
        ];
        prop_oneof![4 => prop::sample::select(pieces).prop_map(String::from), 1 => any::<String>()]
    }

    fn fragments() -> impl Strategy<Value = String> {
        prop::collection::vec(fragment(), 0..40).prop_map(|f| f.concat())
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec!["", " ", "a", "b", "1", "\u{feff}", "\n"]).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array), prop::collection::vec((column(), inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),]
        })
    }

    /// A JSONL line: mostly an object (to which the test adds the mapped input and id when the
    /// flag says so), else any JSON value, syntax fragments or blanks.
    fn jsonl_line() -> impl Strategy<Value = Result<(Map<String, Value>, bool), String>> {
        let object =
            (prop::collection::vec((column(), prop_oneof![3 => json_leaf(), 1 => json_value()]), 0..6), prop::bool::weighted(0.8)).prop_map(|(kv, complete)| Ok((kv.into_iter().collect(), complete)));
        let raw = prop_oneof![json_value().prop_map(|v| v.to_string()), fragments(), prop::sample::select(vec!["", " ", "\t"]).prop_map(String::from)];
        prop_oneof![6 => object, 1 => raw.prop_map(Err)]
    }

    /// A CSV cell: plain text, quoted text (quotes doubled or not), or fragments.
    fn csv_cell() -> impl Strategy<Value = String> {
        prop_oneof![
            20 => prop::sample::select(vec!["", "a", "b", "1", " ", "x y"]).prop_map(String::from),
            10 => any::<String>().prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
            1 => fragments(),
        ]
    }

    fn line_end() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["\n", "\n", "\r\n", "\r"])
    }

    fn bom() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "\u{feff}", "\u{feff}\u{feff}"])
    }

    fn format() -> impl Strategy<Value = Format> {
        prop_oneof![Just(Format::Jsonl), Just(Format::Csv)]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn field_map_parsing_never_panics(spec in prop_oneof![map_spec(), any::<String>()]) {
            let _ = FieldMap::parse(&spec);
        }

        #[test]
        fn dataset_readers_never_panic_on_arbitrary_strings(text in any::<String>(), format in format(), map in field_map()) {
            check(&text, format, &map);
        }

        #[test]
        fn dataset_readers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), format in format(), map in field_map()) {
            // `assay data import` reads text with `read_to_string`, which refuses invalid UTF-8;
            // a lossy reader would pass U+FFFD on, so both are tried.
            if let Ok(text) = std::str::from_utf8(&bytes) {
                check(text, format, &map);
            }
            check(&String::from_utf8_lossy(&bytes), format, &map);
        }

        #[test]
        fn dataset_readers_never_panic_on_syntax_fragments(bom in bom(), text in fragments(), format in format(), map in field_map()) {
            check(&format!("{bom}{text}"), format, &map);
        }

        #[test]
        fn jsonl_reader_never_panics_on_item_like_lines(bom in bom(), lines in prop::collection::vec(jsonl_line(), 0..6), end in line_end(), map in field_map()) {
            let lines: Vec<String> = lines
                .into_iter()
                .enumerate()
                .map(|(i, line)| match line {
                    Ok((mut object, complete)) => {
                        if complete {
                            object.insert(map.source("input").to_string(), Value::from("q"));
                            object.insert(map.source("id").to_string(), Value::from(i));
                        }
                        Value::Object(object).to_string()
                    }
                    Err(raw) => raw,
                })
                .collect();
            check(&format!("{bom}{}", lines.join(end)), Format::Jsonl, &map);
        }

        #[test]
        fn csv_reader_never_panics_on_header_and_rows(
            bom in bom(),
            mut header in prop::collection::vec(column(), 0..6),
            mut rows in prop::collection::vec(prop::collection::vec(csv_cell(), 0..7), 0..5),
            (with_sources, rectangular) in (prop::bool::weighted(0.8), prop::bool::weighted(0.8)),
            end in line_end(),
            map in field_map(),
        ) {
            // Mostly files that have the mapped columns and as many cells as columns, so that
            // reading gets past the header to the records and items.
            if with_sources {
                header.extend(map.sources.iter().cloned());
            }
            if rectangular {
                rows.iter_mut().for_each(|r| r.resize(header.len(), String::new()));
            }
            // Column names as a CSV writer quotes them.
            let quoted = |c: &String| if c.contains([',', '"', '\n', '\r']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.clone() };
            let header = header.iter().map(quoted).collect::<Vec<_>>().join(",");
            let lines: Vec<String> = std::iter::once(header).chain(rows.iter().map(|r| r.join(","))).collect();
            check(&format!("{bom}{}", lines.join(end)), Format::Csv, &map);
        }
    }
}
