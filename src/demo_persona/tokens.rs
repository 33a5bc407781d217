//! The answer text, laid out once at start so that serving an answer of any length up to
//! `--tokens` borrows a slice instead of building a string per request.

/// A token is one word; every token after the first carries its leading space, so the
/// concatenation of streamed tokens equals the non-streamed text.
const WORDS: [&str; 16] = [
    "minds", "manage", "minds", "across", "the", "mesh", "while", "each", "persona", "keeps", "its", "budget", "and",
    "its", "memory", "intact",
];

pub struct TokenText {
    text: String,
    /// Byte offset where token `i` ends.
    ends: Vec<u32>,
}

impl TokenText {
    pub fn new(tokens: u32) -> Self {
        let n = tokens as usize;
        let mut text = String::with_capacity(n * 8);
        let mut ends = Vec::with_capacity(n);
        for i in 0..n {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[i % WORDS.len()]);
            // at most MAX_TOKENS × 9 bytes: fits u32 by far
            ends.push(text.len() as u32);
        }
        TokenText { text, ends }
    }

    pub fn max_tokens(&self) -> u32 {
        self.ends.len() as u32
    }

    /// The first `n` tokens (n is clamped to what exists).
    pub fn prefix(&self, n: u32) -> &str {
        let n = (n as usize).min(self.ends.len());
        if n == 0 { "" } else { &self.text[..self.ends[n - 1] as usize] }
    }

    /// Token `i` (0-based), with its leading space when `i > 0`.
    pub fn token(&self, i: u32) -> &str {
        let i = i as usize;
        let Some(&end) = self.ends.get(i) else { return "" };
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..end as usize]
    }
}

/// What the caller sees as the prompt's length: words, a stable stand-in for a tokenizer.
pub fn count_words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_concatenate_to_the_prefix() {
        let t = TokenText::new(40);
        assert_eq!(t.max_tokens(), 40);
        let joined: String = (0..7).map(|i| t.token(i)).collect();
        assert_eq!(joined, t.prefix(7));
        assert_eq!(count_words(t.prefix(7)), 7);
        assert_eq!(t.prefix(0), "");
        assert_eq!(t.prefix(99), t.prefix(40));
        assert_eq!(t.token(40), "");
        assert_eq!(t.token(0), "minds");
        assert_eq!(t.token(1), " manage");
    }
}
