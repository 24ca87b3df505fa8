//! Column values several tables share: JSON held as text, and verdicts as PASS/FAIL.

use assay_core::Verdict;
use rusqlite::types::Type;
use rusqlite::Row;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned>(text: &str, i: usize) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

/// A NOT NULL column of JSON text.
pub(crate) fn json_column<T: DeserializeOwned>(r: &Row, i: usize) -> rusqlite::Result<T> {
    decode(&r.get::<_, String>(i)?, i)
}

/// A nullable column of JSON text.
pub(crate) fn optional_json_column(r: &Row, i: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    r.get::<_, Option<String>>(i)?.map(|text| decode(&text, i)).transpose()
}

pub(crate) fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    }
}

pub(crate) fn verdict_column(r: &Row, i: usize) -> rusqlite::Result<Verdict> {
    match r.get_ref(i)?.as_str()? {
        "PASS" => Ok(Verdict::Pass),
        "FAIL" => Ok(Verdict::Fail),
        other => Err(rusqlite::Error::FromSqlConversionFailure(i, Type::Text, format!("'{other}' is not a verdict").into())),
    }
}
