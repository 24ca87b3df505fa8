//! assay-pipeline: the evaluation loop (DESIGN.md, "The loop").
