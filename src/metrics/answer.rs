//! Answer extraction as the official graders do it.
//!
//! MMLU-Pro (`compute_accuracy.py` in TIGER-AI-Lab/MMLU-Pro): level `l1` takes the first
//! `answer is (X)`; level `l2` falls back to the last `Answer: X` on the first line that
//! has one, then to the last standalone letter A–J anywhere. An answer none of them finds
//! is "unparsed"; the official script then draws a letter with CPython's
//! `random.choice` after `random.seed(12345)`, which [`super::rng::PyRandom`] reproduces
//! bit for bit.
//!
//! GSM8K (lm-evaluation-harness `gsm8k`): `strict` takes the first `#### N`, `flexible` the
//! last number; both compared after dropping `,`, `$` and a trailing `.`.

use std::sync::LazyLock;

use regex::Regex;

/// MMLU-Pro extraction levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `answer is \(?([A-J])\)?`, first match.
    L1,
    /// L1, else `.*[aA]nswer:\s*([A-J])`, else the last standalone letter A–J.
    L2,
}

static ANSWER_IS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"answer is \(?([A-J])\)?").expect("valid regex"));
// `.` stops at a newline, as in Python without DOTALL: the last "Answer: X" on the first
// line holding one (`\s*` may still run across lines).
static ANSWER_COLON: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r".*[aA]nswer:\s*([A-J])").expect("valid regex"));
// simple-evals' ANSWER_PATTERN_MULTICHOICE (GPQA): case-insensitive, so a lowercase
// letter is read (and then does not equal the uppercase gold, as there).
static ANSWER_MULTICHOICE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)Answer[ \t]*:[ \t]*\$?([A-D])\$?").expect("valid regex"));

/// The letter simple-evals' GPQA grader reads: the first `Answer: X` (any case).
pub fn gpqa(text: &str) -> Option<char> {
    ANSWER_MULTICHOICE
        .captures(text)
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().chars().next())
}

static STANDALONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[A-J]\b").expect("valid regex"));

/// The letter the official MMLU-Pro grader reads from `text` at `level`, if any.
pub fn mmlu_pro(text: &str, level: Level) -> Option<char> {
    let first_letter = |c: regex::Captures| c.get(1).and_then(|m| m.as_str().chars().next());
    if let Some(letter) = ANSWER_IS.captures(text).and_then(first_letter) {
        return Some(letter);
    }
    if level == Level::L1 {
        return None;
    }
    if let Some(letter) = ANSWER_COLON.captures(text).and_then(first_letter) {
        return Some(letter);
    }
    // `\b[A-J]\b(?!.*\b[A-J]\b)` with DOTALL is the last standalone letter.
    STANDALONE
        .find_iter(text)
        .last()
        .and_then(|m| m.as_str().chars().next())
}

/// lm-evaluation-harness's `mmlu_pro` filter: the first `answer is (X)`, nothing else.
pub fn mmlu_pro_lm_eval(text: &str) -> Option<char> {
    mmlu_pro(text, Level::L1)
}

/// GSM8K extraction modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gsm8kMode {
    /// The first `#### N`.
    Strict,
    /// The last number in the text.
    Flexible,
}

static HASHES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#### (\-?[0-9\.\,]+)").expect("valid regex"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid regex"));

pub fn gsm8k(text: &str, mode: Gsm8kMode) -> Option<String> {
    match mode {
        Gsm8kMode::Strict => HASHES.captures(text).map(|c| c[1].to_string()),
        Gsm8kMode::Flexible => NUMBER
            .captures_iter(text)
            .last()
            .and_then(|c| c.get(1).or_else(|| c.get(2)))
            .map(|m| m.as_str().to_string()),
    }
}

/// lm-eval's `exact_match` normalisation for GSM8K: everything up to `#### ` (gold
/// answers), `,`, `$` and a trailing `.` removed, case ignored.
pub fn gsm8k_normalize(text: &str) -> String {
    static UP_TO_HASHES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?s).*#### ").expect("valid regex"));
    let text = UP_TO_HASHES.replace_all(text, "");
    let text = text.replace([',', '$'], "");
    let text = text.strip_suffix('.').unwrap_or(&text);
    text.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmlu_pro_cascade() {
        let t = "Step... the answer is (C). Later the answer is D";
        assert_eq!(mmlu_pro(t, Level::L1), Some('C'));
        assert_eq!(mmlu_pro("no verdict here", Level::L1), None);
        // Level 2: the last "Answer:" on the first line holding one.
        let t = "x Answer: B and answer: E\nAnswer: F";
        assert_eq!(mmlu_pro(t, Level::L2), Some('E'));
        assert_eq!(mmlu_pro("Answer:\n\n G", Level::L2), Some('G'));
        // Then the last standalone letter, across lines.
        assert_eq!(
            mmlu_pro("Option A looks right\nbut maybe B.", Level::L2),
            Some('B')
        );
        assert_eq!(mmlu_pro("ABCD and K", Level::L2), None);
        assert_eq!(mmlu_pro_lm_eval("The answer is J"), Some('J'));
    }

    #[test]
    fn gsm8k_extraction() {
        let out = "She pays $1,200 in total.\n#### 1,200";
        assert_eq!(gsm8k(out, Gsm8kMode::Strict).as_deref(), Some("1,200"));
        assert_eq!(
            gsm8k("so 3 + 4 = 7 dollars.", Gsm8kMode::Flexible).as_deref(),
            Some("7")
        );
        assert_eq!(
            gsm8k("costs $18.", Gsm8kMode::Flexible).as_deref(),
            Some("$18.")
        );
        assert_eq!(gsm8k("no number", Gsm8kMode::Strict), None);
        assert_eq!(gsm8k_normalize("$18."), "18");
        assert_eq!(
            gsm8k_normalize("Natalia sold 48/2 = 24 clips.\n#### 72"),
            "72"
        );
        assert_eq!(gsm8k_normalize("1,200"), "1200");
        assert_eq!(gsm8k_normalize("-5"), "-5");
    }
}
