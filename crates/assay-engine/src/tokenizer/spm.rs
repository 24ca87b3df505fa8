//! SentencePiece tokenizers rebuilt from GGUF metadata (`tokenizer.ggml.model = llama`: Llama 2,
//! Mistral, Gemma), reproducing llama.cpp's ids: special and user-defined tokens written in the
//! text are split out first (longest match), spaces become `▁` (with a leading one when the
//! model asks for it), and each remaining piece is built up by merging the adjacent pair whose
//! merged token scores highest; characters no token covers fall back to byte tokens `<0xXX>`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// llama.cpp's token types (`llama_token_type`).
pub const TYPE_NORMAL: i32 = 1;
pub const TYPE_UNKNOWN: i32 = 2;
pub const TYPE_CONTROL: i32 = 3;
pub const TYPE_USER_DEFINED: i32 = 4;
pub const TYPE_BYTE: i32 = 6;

const SPACE: char = '\u{2581}';

/// See the module notes.
#[derive(Clone)]
pub struct SpmTokenizer {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
    ids: HashMap<String, u32>,
    /// Byte `b`'s token id (`<0xXX>`).
    bytes: [Option<u32>; 256],
    /// Special and user-defined tokens, matched in text before anything else.
    specials: aho_corasick::AhoCorasick,
    special_ids: Vec<u32>,
    add_space_prefix: bool,
}

impl SpmTokenizer {
    pub fn new(tokens: Vec<String>, scores: Vec<f32>, types: Vec<i32>, add_space_prefix: bool) -> Result<Self, String> {
        if scores.len() != tokens.len() || types.len() != tokens.len() {
            return Err(format!("{} tokens, {} scores and {} types", tokens.len(), scores.len(), types.len()));
        }
        let ids: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut bytes = [None; 256];
        for (b, slot) in bytes.iter_mut().enumerate() {
            *slot = ids.get(&format!("<0x{b:02X}>")).copied();
        }
        let special_ids: Vec<u32> = (0..tokens.len() as u32).filter(|&i| matches!(types[i as usize], TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED) && !tokens[i as usize].is_empty()).collect();
        let specials = aho_corasick::AhoCorasick::builder().match_kind(aho_corasick::MatchKind::LeftmostLongest).build(special_ids.iter().map(|&i| &tokens[i as usize])).map_err(|e| e.to_string())?;
        Ok(Self { tokens, scores, types, ids, bytes, specials, special_ids, add_space_prefix })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The longest piece, in bytes (`▁` and `<0xXX>` are longer than what they stand for).
    pub fn longest_piece_bytes(&self) -> usize {
        self.tokens.iter().map(String::len).max().unwrap_or(1)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Token ids of `text`; special tokens written in it are recognised.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut after_special = true;
        let mut at = 0;
        for m in self.specials.find_iter(text) {
            if m.start() > at {
                self.encode_piece(&text[at..m.start()], after_special, &mut out);
            }
            out.push(self.special_ids[m.pattern().as_usize()]);
            after_special = true;
            at = m.end();
        }
        if at < text.len() {
            self.encode_piece(&text[at..], after_special, &mut out);
        }
        out
    }

    /// One run of ordinary text (llama.cpp's `llm_tokenizer_spm_session`).
    fn encode_piece(&self, text: &str, after_special: bool, out: &mut Vec<u32>) {
        let mut s = String::with_capacity(text.len() + 3);
        if self.add_space_prefix && after_special {
            s.push(SPACE);
        }
        s.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));
        // Symbols: one per character, linked so that merges can remove the right one.
        let mut sym: Vec<Symbol> = Vec::new();
        for (i, (start, c)) in s.char_indices().enumerate() {
            sym.push(Symbol { start, len: c.len_utf8(), prev: i as isize - 1, next: i as isize + 1 });
        }
        if let Some(last) = sym.last_mut() {
            last.next = -1;
        }
        let mut queue = BinaryHeap::new();
        for i in 1..sym.len() {
            self.try_pair(&s, &sym, i - 1, i, &mut queue);
        }
        while let Some(pair) = queue.pop() {
            let (l, r) = (pair.left, pair.right);
            if sym[l].len == 0 || sym[r].len == 0 || sym[l].len + sym[r].len != pair.len {
                continue;
            }
            sym[l].len += sym[r].len;
            sym[r].len = 0;
            sym[l].next = sym[r].next;
            let after = sym[r].next;
            if after >= 0 {
                sym[after as usize].prev = l as isize;
            }
            if sym[l].prev >= 0 {
                self.try_pair(&s, &sym, sym[l].prev as usize, l, &mut queue);
            }
            if sym[l].next >= 0 {
                self.try_pair(&s, &sym, l, sym[l].next as usize, &mut queue);
            }
        }
        let mut i = 0isize;
        while i >= 0 && (i as usize) < sym.len() {
            let symbol = &sym[i as usize];
            let piece = &s[symbol.start..symbol.start + symbol.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.bytes[b as usize])),
            }
            i = symbol.next;
        }
    }

    fn try_pair(&self, s: &str, sym: &[Symbol], left: usize, right: usize, queue: &mut BinaryHeap<Pair>) {
        let len = sym[left].len + sym[right].len;
        let text = &s[sym[left].start..sym[left].start + len];
        if let Some(&id) = self.ids.get(text) {
            queue.push(Pair { score: self.scores[id as usize], left, right, len });
        }
    }

    /// The text of `ids`: `▁` as spaces, byte tokens as bytes, every other token as written.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(t) = self.tokens.get(id as usize) else { continue };
            match self.types[id as usize] {
                TYPE_BYTE => bytes.extend(u8::from_str_radix(t.trim_start_matches("<0x").trim_end_matches('>'), 16).ok()),
                TYPE_NORMAL => bytes.extend(t.replace(SPACE, " ").bytes()),
                _ => bytes.extend(t.bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    /// Bytes; 0 once merged into its left neighbour.
    len: usize,
    prev: isize,
    next: isize,
}

/// A candidate merge; the highest score first, then the leftmost.
struct Pair {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pair {}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(add_space_prefix: bool) -> SpmTokenizer {
        let vocab: Vec<(&str, f32, i32)> = vec![
            ("<unk>", 0.0, TYPE_UNKNOWN),
            ("<s>", 0.0, TYPE_CONTROL),
            ("<0x41>", 0.0, TYPE_BYTE),
            ("<0xC3>", 0.0, TYPE_BYTE),
            ("<0xA9>", 0.0, TYPE_BYTE),
            ("\u{2581}", -1.0, TYPE_NORMAL),
            ("h", -2.0, TYPE_NORMAL),
            ("i", -2.0, TYPE_NORMAL),
            ("hi", -0.5, TYPE_NORMAL),
            ("\u{2581}hi", -0.1, TYPE_NORMAL),
            ("\n\n", 0.0, TYPE_USER_DEFINED),
        ];
        SpmTokenizer::new(vocab.iter().map(|v| v.0.to_string()).collect(), vocab.iter().map(|v| v.1).collect(), vocab.iter().map(|v| v.2).collect(), add_space_prefix).unwrap()
    }

    #[test]
    fn merges_by_score_splits_specials_and_falls_back_to_bytes() {
        let t = tok(false);
        assert_eq!(t.encode("hi hi"), vec![8, 9]);
        assert_eq!(t.encode("<s>hi\n\nAé"), vec![1, 8, 10, 2, 3, 4]);
        assert_eq!(t.decode(&[1, 8, 10, 2, 3, 4]), "<s>hi\n\nAé");
        assert_eq!(t.decode(&[8, 9]), "hi hi");
        // A leading space where the model asks for one, also after a special token.
        let p = tok(true);
        assert_eq!(p.encode("hi"), vec![9]);
        assert_eq!(p.encode("<s>hi"), vec![1, 9]);
    }
}
