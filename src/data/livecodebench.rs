//! LiveCodeBench code generation (`livecodebench/code_generation_lite`): one JSONL file
//! per release (`test.jsonl`, `test2.jsonl`, ...), each problem with public and private
//! test cases that run on standard input or call a method of `class Solution`. The
//! private cases are a JSON string, or (as the lite dataset stores most of them) that
//! string pickled, zlib-compressed and base64-encoded.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

use crate::data::code::CodeProblem;
use crate::data::lines::{opt_str_field, str_field};
use crate::error::{Error, Result};

/// The newest release the dataset has (`release_latest` reads through it).
pub const LATEST_RELEASE: u32 = 6;

/// One test: the input and expected output, as the dataset's strings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IoTest {
    pub input: String,
    pub output: String,
    /// Arguments (one JSON value per input line) for `Solution().<func_name>`, and the
    /// JSON return value; else the program's standard input and output.
    pub functional: bool,
}

/// The files of a version tag, as the dataset's loading script names them:
/// `release_vN` (every file up to N), `release_latest`, `vN` (one file) or `vA_vB`.
pub fn release_files(tag: &str) -> Result<Vec<String>> {
    let file = |n: u32| {
        if n == 1 {
            "test.jsonl".to_string()
        } else {
            format!("test{n}.jsonl")
        }
    };
    let version = |text: &str| -> Option<u32> {
        text.strip_prefix('v')
            .and_then(|n| n.parse().ok())
            .filter(|&n| n >= 1)
    };
    let range = if tag == "release_latest" {
        Some((1, LATEST_RELEASE))
    } else if let Some(n) = tag.strip_prefix("release_").and_then(version) {
        Some((1, n))
    } else if let Some((a, b)) = tag.split_once('_') {
        version(a).zip(version(b)).filter(|(a, b)| a <= b)
    } else {
        version(tag).map(|n| (n, n))
    };
    match range {
        Some((a, b)) => Ok((a..=b).map(file).collect()),
        None => Err(Error::Usage(format!(
            "LiveCodeBench release `{tag}`: expected release_vN, release_latest, vN or vA_vB"
        ))),
    }
}

/// A `YYYY-MM-DD` bound of the date filter.
pub fn parse_day(text: &str) -> Result<NaiveDateTime> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .map_err(|_| Error::Usage(format!("date `{text}`: expected YYYY-MM-DD")))
}

fn parse_contest_date(text: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// Test cases from the dataset's string: JSON, else base64 → zlib → pickle → JSON.
pub fn decode_tests(text: &str) -> std::result::Result<Vec<IoTest>, String> {
    let json = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(_) => {
            let packed = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| format!("neither JSON nor base64: {e}"))?;
            let mut pickled = Vec::new();
            flate2::read::ZlibDecoder::new(packed.as_slice())
                .read_to_end(&mut pickled)
                .map_err(|e| format!("base64 but not zlib data: {e}"))?;
            let inner: String = serde_pickle::from_slice(&pickled, Default::default())
                .map_err(|e| format!("zlib data but not a pickled string: {e}"))?;
            serde_json::from_str(&inner)
                .map_err(|e| format!("the unpacked text is not JSON: {e}"))?
        }
    };
    let Value::Array(cases) = json else {
        return Err("expected a list of test cases".into());
    };
    cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let get = |field: &str| {
                case.get(field)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("case {i}: `{field}` is not a string"))
            };
            let functional = match get("testtype")?.as_str() {
                "functional" => true,
                "stdin" => false,
                other => {
                    return Err(format!(
                        "case {i}: testtype `{other}`: expected stdin or functional"
                    ))
                }
            };
            Ok(IoTest {
                input: get("input")?,
                output: get("output")?,
                functional,
            })
        })
        .collect()
}

/// The window of contest dates a run keeps (either end open).
#[derive(Debug, Clone, Copy, Default)]
pub struct DateWindow {
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
}

/// One problem of a release file, or `None` when its contest date is outside the window
/// (its tests are then not decoded).
pub fn problem(
    path: &Path,
    obj: &Map<String, Value>,
    line: usize,
    window: DateWindow,
) -> Result<Option<CodeProblem>> {
    let date_text = str_field(path, line, obj, "contest_date")?;
    let date = parse_contest_date(&date_text).ok_or_else(|| {
        Error::record(
            path,
            line,
            "contest_date",
            format!("`{date_text}` is not an ISO date"),
        )
    })?;
    if window.start.is_some_and(|s| date < s) || window.end.is_some_and(|e| date > e) {
        return Ok(None);
    }
    let tests_of = |field: &str| -> Result<Vec<IoTest>> {
        decode_tests(&str_field(path, line, obj, field)?)
            .map_err(|m| Error::record(path, line, field, m))
    };
    let mut tests = tests_of("public_test_cases")?;
    tests.extend(tests_of("private_test_cases")?);
    if tests.is_empty() {
        return Err(Error::record(path, line, "private_test_cases", "no tests"));
    }
    let metadata = opt_str_field(path, line, obj, "metadata")?;
    let func_name = if metadata.trim().is_empty() {
        String::new()
    } else {
        let meta: Value = serde_json::from_str(&metadata)
            .map_err(|e| Error::record(path, line, "metadata", format!("not JSON: {e}")))?;
        meta.get("func_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let functional = tests.iter().filter(|t| t.functional).count();
    if functional > 0 && (functional < tests.len() || func_name.is_empty()) {
        return Err(Error::record(
            path,
            line,
            "metadata",
            "functional tests need every test functional and a func_name",
        ));
    }
    Ok(Some(CodeProblem {
        id: str_field(path, line, obj, "question_id")?,
        prompt: str_field(path, line, obj, "question_content")?,
        entry_point: func_name,
        tests: Vec::new(),
        test_setup: String::new(),
        canonical: String::new(),
        starter_code: opt_str_field(path, line, obj, "starter_code")?,
        io_tests: tests,
        date: date.format("%Y-%m-%d").to_string(),
        difficulty: opt_str_field(path, line, obj, "difficulty")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_tags_name_the_files_the_loading_script_reads() {
        assert_eq!(release_files("release_v1").unwrap(), ["test.jsonl"]);
        assert_eq!(
            release_files("release_v3").unwrap(),
            ["test.jsonl", "test2.jsonl", "test3.jsonl"]
        );
        assert_eq!(release_files("release_latest").unwrap().len(), 6);
        assert_eq!(release_files("v2").unwrap(), ["test2.jsonl"]);
        assert_eq!(
            release_files("v4_v5").unwrap(),
            ["test4.jsonl", "test5.jsonl"]
        );
        for bad in ["", "v0", "release_", "v5_v4", "latest", "release_vx"] {
            assert!(release_files(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tests_decode_from_json_and_from_the_packed_form() {
        let json = r#"[{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]"#;
        let plain = decode_tests(json).unwrap();
        assert_eq!(plain[0].input, "1 2\n");
        assert!(!plain[0].functional);
        // A pickle (protocol 2) of that JSON string, zlib-compressed, base64-encoded.
        let pickled = serde_pickle::to_vec(&json, Default::default()).unwrap();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &pickled).unwrap();
        let packed = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
        assert_eq!(decode_tests(&packed).unwrap(), plain);
        assert!(decode_tests("not base64 !!")
            .unwrap_err()
            .contains("base64"));
        assert!(decode_tests(r#"[{"input": "1"}]"#)
            .unwrap_err()
            .contains("is not a string"));
    }

    #[test]
    fn contest_dates_parse_in_the_dataset_forms() {
        for text in [
            "2023-08-21T00:00:00",
            "2023-08-21T00:00:00.000",
            "2023-08-21",
        ] {
            assert_eq!(
                parse_contest_date(text).unwrap(),
                parse_day("2023-08-21").unwrap()
            );
        }
        assert!(parse_contest_date("21/08/2023").is_none());
    }
}
