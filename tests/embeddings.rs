//! all-MiniLM-L6-v2 end to end: unit vectors, batching with padding to the longest text gives
//! the same vectors as one text at a time, and the vectors carry meaning.

mod common;

use assay_engine::embed::cosine;

#[test]
fn vectors_are_unit_length_and_independent_of_batch_padding() {
    let e = common::minilm();
    let texts = [
        "Short.",
        "The patient was started on metformin for type 2 diabetes and counselled on diet.",
        "A much longer text that pads every other member of the batch: the sea was calm, the sky was grey, and the lighthouse keeper wrote in his log.",
    ];
    let batched = e.embed(&texts).unwrap();
    assert_eq!(batched.len(), 3);
    for (text, v) in texts.iter().zip(&batched) {
        assert_eq!(v.len(), e.dim());
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        let alone = &e.embed(&[text]).unwrap()[0];
        assert!(cosine(v, alone) > 0.9999, "padding changed the embedding of {text:?}");
    }
    assert!(e.embed(&[]).unwrap().is_empty());
}

#[test]
fn paraphrases_are_closer_than_unrelated_texts() {
    let e = common::minilm();
    let v = e.embed(&["A cat is sitting on the mat.", "A kitten sits on a rug.", "Quarterly revenue rose five percent."]).unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
}
