//! Row ids, one type per table so that an item id cannot be passed where a run id is expected.

macro_rules! row_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                i64::column_result(value).map(Self)
            }
        }
    )*};
}

row_id!(
    ProjectId,
    DatasetId,
    /// An item's row; the id the dataset file gave it is `Item::key`.
    ItemId,
    GenerationId,
    AnnotationId,
    /// One error listed by an annotation: what error clusters are made of.
    ErrorId,
    ClusterId,
    /// A row of `set_versions`; the project-wide version number is `SetVersion::number`.
    SetVersionId,
    RunId,
    QuestionId,
    GoldOutputId,
);
