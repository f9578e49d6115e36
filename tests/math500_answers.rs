//! The MATH grader on MATH-500: every official `answer` must equal the content of the last
//! `\boxed{}` of its own `solution`, by the Hendrycks normalisation alone and by the
//! extended equivalence.

mod common;

use assay::metrics::math_equiv::{boxed_answer, hendrycks_equiv, is_equiv};

#[test]
fn all_500_official_answers_match_their_boxed_solutions() {
    let text = std::fs::read_to_string(common::data_root().join("math500/test.jsonl")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let answer = r["answer"].as_str().unwrap();
        let boxed = boxed_answer(r["solution"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no box in {}", r["unique_id"]));
        assert!(hendrycks_equiv(answer, boxed), "{answer:?} vs {boxed:?}");
        assert!(is_equiv(answer, boxed), "{answer:?} vs {boxed:?}");
        n += 1;
    }
    assert_eq!(n, 500);
}
