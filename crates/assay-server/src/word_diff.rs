//! A word-level diff of two texts (a check's question or criteria between versions): the
//! longest common subsequence of their words. Check texts are a few hundred words at most, so
//! the quadratic table is small; longer texts fall back to "all removed, all added".

use serde::Serialize;

/// Words per side above which no alignment is attempted.
const MAX_WORDS: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WordChange {
    Same,
    Removed,
    Added,
}

/// A run of words with one fate, with the spaces between them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WordSegment {
    pub change: WordChange,
    pub text: String,
}

pub(crate) fn word_diff(before: &str, after: &str) -> Vec<WordSegment> {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.split_whitespace().collect(), after.split_whitespace().collect());
    let mut ops: Vec<(WordChange, &str)> = Vec::new();
    if a.len() > MAX_WORDS || b.len() > MAX_WORDS {
        ops.extend(a.iter().map(|w| (WordChange::Removed, *w)));
        ops.extend(b.iter().map(|w| (WordChange::Added, *w)));
    } else {
        // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
        let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push((WordChange::Same, a[i]));
                (i, j) = (i + 1, j + 1);
            } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
                // On a tie the old words go first: "[-old-] {+new+}" reads as a replacement.
                ops.push((WordChange::Removed, a[i]));
                i += 1;
            } else {
                ops.push((WordChange::Added, b[j]));
                j += 1;
            }
        }
    }
    let mut segments: Vec<WordSegment> = Vec::new();
    for (change, word) in ops {
        match segments.last_mut() {
            Some(last) if last.change == change => {
                last.text.push(' ');
                last.text.push_str(word);
            }
            _ => segments.push(WordSegment { change, text: word.to_string() }),
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(segments: &[WordSegment]) -> String {
        segments
            .iter()
            .map(|s| match s.change {
                WordChange::Same => s.text.clone(),
                WordChange::Removed => format!("[-{}-]", s.text),
                WordChange::Added => format!("{{+{}+}}", s.text),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn marks_the_words_that_changed() {
        let d = word_diff("Does the answer state the dose?", "Does the answer state the dose and its unit?\nExpert ruling: mg only");
        assert_eq!(show(&d), "Does the answer state the [-dose?-] {+dose and its unit? Expert ruling: mg only+}");
        assert_eq!(show(&word_diff("a b c", "a b c")), "a b c");
        assert_eq!(show(&word_diff("", "new")), "{+new+}");
        assert_eq!(show(&word_diff("old", "")), "[-old-]");
    }
}
