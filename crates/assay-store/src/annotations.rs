//! Generations (outputs made for an item by one generator config) and their annotations: the
//! concrete errors an annotator model listed, or its raw answer flagged unparseable, so that
//! no answer is ever silently dropped.

use crate::columns::json_column;
use crate::error::{foreign_key_error, OptionalRow};
use crate::text_enum::text_enum;
use crate::{AnnotationId, DatasetId, ErrorId, GenerationId, ItemId, ProjectId, Result, Store, StoreError};
use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewGeneration {
    pub item: ItemId,
    /// The generator config: model, sampling, prompt variant.
    pub generator: serde_json::Value,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGeneration {
    pub id: GenerationId,
    pub item: ItemId,
    pub generator: serde_json::Value,
    pub text: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

text_enum!(Severity { Minor => "minor", Major => "major", Critical => "critical" });

/// Byte offsets `[start, end)` into the generation's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// One concrete error an annotator found in an output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotatedError {
    pub description: String,
    #[serde(default)]
    pub span: Option<Span>,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredError {
    pub id: ErrorId,
    pub annotation: AnnotationId,
    #[serde(flatten)]
    pub error: AnnotatedError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: AnnotationId,
    pub generation: GenerationId,
    pub annotator: serde_json::Value,
    /// The annotator's answer as it came.
    pub raw: String,
    /// False when the answer could not be parsed into errors; `errors` is then empty.
    pub parsed: bool,
    pub errors: Vec<StoredError>,
    pub created_at: String,
}

fn generation_from_row(r: &Row) -> rusqlite::Result<StoredGeneration> {
    Ok(StoredGeneration { id: r.get(0)?, item: r.get(1)?, generator: json_column(r, 2)?, text: r.get(3)?, created_at: r.get(4)? })
}

fn error_from_row(r: &Row) -> rusqlite::Result<StoredError> {
    let start: Option<usize> = r.get(3)?;
    let end: Option<usize> = r.get(4)?;
    Ok(StoredError { id: r.get(0)?, annotation: r.get(1)?, error: AnnotatedError { description: r.get(2)?, span: start.zip(end).map(|(start, end)| Span { start, end }), severity: r.get(5)? } })
}

const ERROR_COLUMNS: &str = "e.id, e.annotation_id, e.description, e.span_start, e.span_end, e.severity";

impl Store {
    /// Stores generated outputs in one transaction; returns their ids in order.
    pub fn add_generations(&mut self, generations: &[NewGeneration]) -> Result<Vec<GenerationId>> {
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(generations.len());
        {
            let mut insert = tx.prepare("INSERT INTO generations (item_id, generator, text) VALUES (?1, ?2, ?3)")?;
            for g in generations {
                insert.execute(params![g.item, g.generator.to_string(), g.text]).map_err(|e| foreign_key_error(e, || format!("item {}", g.item)))?;
                ids.push(GenerationId(tx.last_insert_rowid()));
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    pub fn generation(&self, id: GenerationId) -> Result<StoredGeneration> {
        self.conn.query_row("SELECT id, item_id, generator, text, created_at FROM generations WHERE id = ?1", [id], generation_from_row).or_not_found(|| format!("generation {id}"))
    }

    /// Every generation for the dataset's items, by item then creation.
    pub fn generations(&self, dataset: DatasetId) -> Result<Vec<StoredGeneration>> {
        let mut stmt = self.conn.prepare(
            "SELECT g.id, g.item_id, g.generator, g.text, g.created_at FROM generations g JOIN items i ON i.id = g.item_id
             WHERE i.dataset_id = ?1 ORDER BY g.item_id, g.id",
        )?;
        let rows = stmt.query_map([dataset], generation_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records an annotator's answer on a generation: `errors` is what was parsed from `raw`, or
    /// `None` when nothing could be, in which case `raw` is kept and flagged unparseable.
    /// Spans must lie within the generation's text.
    pub fn add_annotation(&mut self, generation: GenerationId, annotator: &serde_json::Value, raw: &str, errors: Option<&[AnnotatedError]>) -> Result<Annotation> {
        let text_len = self.generation(generation)?.text.len();
        let tx = self.conn.transaction()?;
        tx.execute("INSERT INTO annotations (generation_id, annotator, raw, parsed) VALUES (?1, ?2, ?3, ?4)", params![generation, annotator.to_string(), raw, errors.is_some()])?;
        let annotation = AnnotationId(tx.last_insert_rowid());
        {
            let mut insert = tx.prepare("INSERT INTO annotation_errors (annotation_id, description, span_start, span_end, severity) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for e in errors.unwrap_or_default() {
                if let Some(s) = e.span.filter(|s| s.start > s.end || s.end > text_len) {
                    return Err(StoreError::Invalid(format!("error span {}..{} lies outside the generation's {text_len} bytes", s.start, s.end)));
                }
                insert.execute(params![annotation, e.description, e.span.map(|s| s.start), e.span.map(|s| s.end), e.severity])?;
            }
        }
        tx.commit()?;
        self.annotation(annotation)
    }

    pub fn annotation(&self, id: AnnotationId) -> Result<Annotation> {
        let (generation, annotator, raw, parsed, created_at) = self
            .conn
            .query_row("SELECT generation_id, annotator, raw, parsed, created_at FROM annotations WHERE id = ?1", [id], |r| Ok((r.get(0)?, json_column(r, 1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .or_not_found(|| format!("annotation {id}"))?;
        let mut stmt = self.conn.prepare(&format!("SELECT {ERROR_COLUMNS} FROM annotation_errors e WHERE e.annotation_id = ?1 ORDER BY e.id"))?;
        let errors = stmt.query_map([id], error_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(Annotation { id, generation, annotator, raw, parsed, errors, created_at })
    }

    /// Every parsed error of the project's annotations: what discovery clusters.
    pub fn annotated_errors(&self, project: ProjectId) -> Result<Vec<StoredError>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ERROR_COLUMNS} FROM annotation_errors e JOIN annotations a ON a.id = e.annotation_id
             JOIN generations g ON g.id = a.generation_id JOIN items i ON i.id = g.item_id JOIN datasets d ON d.id = i.dataset_id
             WHERE d.project_id = ?1 ORDER BY e.id"
        ))?;
        let rows = stmt.query_map([project], error_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// The project's annotations whose answer could not be parsed.
    pub fn unparseable_annotations(&self, project: ProjectId) -> Result<Vec<Annotation>> {
        let ids: Vec<AnnotationId> = self
            .conn
            .prepare(
                "SELECT a.id FROM annotations a JOIN generations g ON g.id = a.generation_id JOIN items i ON i.id = g.item_id
                 JOIN datasets d ON d.id = i.dataset_id WHERE d.project_id = ?1 AND a.parsed = 0 ORDER BY a.id",
            )?
            .query_map([project], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.into_iter().map(|id| self.annotation(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use serde_json::json;

    #[test]
    fn parsed_and_unparseable_answers_are_both_kept() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", None)]).unwrap();
        let item = store.items(d.id).unwrap()[0].id;
        let gens = store.add_generations(&[NewGeneration { item, generator: json!({"model": "smollm2", "temperature": 0.7}), text: "The sky is green.".into() }]).unwrap();
        let errors = [AnnotatedError { description: "wrong colour".into(), span: Some(Span { start: 11, end: 16 }), severity: Severity::Major }];
        let annotator = json!({"model": "smollm2"});
        let a = store.add_annotation(gens[0], &annotator, "[...]", Some(&errors)).unwrap();
        assert!(a.parsed);
        assert_eq!(a.errors.iter().map(|e| e.error.clone()).collect::<Vec<_>>(), errors);
        let junk = store.add_annotation(gens[0], &annotator, "I cannot answer that", None).unwrap();
        assert!(!junk.parsed && junk.errors.is_empty());
        assert_eq!(store.unparseable_annotations(p.id).unwrap(), vec![junk]);
        assert_eq!(store.annotated_errors(p.id).unwrap(), a.errors);
        assert_eq!(store.generations(d.id).unwrap()[0].generator["temperature"], 0.7);
    }

    #[test]
    fn bad_spans_and_unknown_items_are_refused_whole() {
        let (_dir, mut store) = temp_store();
        let p = project(&mut store, "p");
        let d = store.import_dataset(p.id, "d", "", &[item("a", None)]).unwrap();
        let item = store.items(d.id).unwrap()[0].id;
        let g = |item| NewGeneration { item, generator: json!({}), text: "short".into() };
        assert!(matches!(store.add_generations(&[g(item), g(ItemId(999))]), Err(StoreError::NotFound { .. })));
        assert!(store.generations(d.id).unwrap().is_empty());
        let gen = store.add_generations(&[g(item)]).unwrap()[0];
        let errors = [
            AnnotatedError { description: "ok".into(), span: None, severity: Severity::Minor },
            AnnotatedError { description: "past the end".into(), span: Some(Span { start: 2, end: 50 }), severity: Severity::Minor },
        ];
        assert!(matches!(store.add_annotation(gen, &json!({}), "", Some(&errors)), Err(StoreError::Invalid(_))));
        assert!(store.annotated_errors(p.id).unwrap().is_empty());
        let n: i64 = store.conn.query_row("SELECT count(*) FROM annotations", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }
}
