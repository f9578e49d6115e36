//! No input file makes assay panic: every parser is fed 100,000 mutations of small valid
//! inputs (byte flips, inserts, deletes, truncations, splices, integers written over
//! length fields; for text formats also tokens swapped for huge, negative, non-finite or
//! mistyped values and lines dropped or doubled) and must return `Ok` or an error
//! naming the file. Each property has a fixed ChaCha seed, printed with its timing;
//! failures found are kept under `proptest-regressions/fuzz_inputs/` and replayed first.
//!
//! Run in release mode: `cargo test --release --test fuzz_inputs -- --nocapture`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use assay::data::{beir, lines, sts, table::Table};
use assay::engine::candle::{load as candle_load, safetensors_header};
use assay::engine::local::gguf_header;
use assay::engine::preprocess::Rgb;
use assay::engine::ImageInput;
use assay::error::Error;
use assay::spec::{DatasetSpec, StsSpec, SuiteSpec, TaskSpec};
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, RngSeed, TestCaseError, TestRunner,
};

#[path = "fuzz/mutate.rs"]
mod mutate;
use mutate::{mutated, Input, BINARY, TEXT};

/// Cases per parser; `ASSAY_FUZZ_CASES` runs a longer campaign with the same seeds.
fn cases() -> u32 {
    std::env::var("ASSAY_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000)
}

thread_local! {
    /// Whether the case's first parse succeeded (for the per-property summary).
    static PARSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `check` on `cases()` mutations of `seeds`; panics with the shrunk input on failure.
fn fuzz(
    name: &str,
    seed: u64,
    regressions: &'static str,
    seeds: Vec<Vec<u8>>,
    dictionary: &'static [&'static [u8]],
    check: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: cases(),
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        source_file: Some(file!()),
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    // Panics the library contains (third-party parsers) are errors, not test noise.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(assay::engine::contain::quiet_contained_panics);
    let mut runner = TestRunner::new(config);
    let start = Instant::now();
    let (cases, parsed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner.run(&mutated(seeds, dictionary), |input: Input| {
        cases.fetch_add(1, Ordering::Relaxed);
        let before = PARSED.with(|p| p.replace(0));
        let outcome = check(&input.0);
        parsed.fetch_add(PARSED.with(|p| p.replace(before)), Ordering::Relaxed);
        outcome
    });
    eprintln!(
        "fuzz {name}: seed {seed:#018x}, {} cases ({} accepted by a parser), {:.2} s",
        cases.into_inner(),
        parsed.into_inner(),
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {name} (seed {seed:#018x}): {e}\n{runner}");
    }
}

/// An error must name the file; `located` also demands a line-and-field error (or a
/// whole-file one) for formats that have lines.
fn names_file<T>(result: assay::Result<T>, file: &str) -> Result<Option<T>, TestCaseError> {
    match result {
        Ok(v) => {
            PARSED.with(|p| p.set(1));
            Ok(Some(v))
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                message.contains(file),
                "error does not name {file}: {message}"
            );
            Ok(None)
        }
    }
}

fn located<T>(result: assay::Result<T>, file: &str) -> Result<Option<T>, TestCaseError> {
    if let Err(e) = &result {
        prop_assert!(
            matches!(e, Error::Record { .. } | Error::Input { .. }),
            "not a line/field or whole-file error: {e:?}"
        );
    }
    names_file(result, file)
}

fn dataset(toml: &str) -> DatasetSpec {
    toml::from_str(toml).expect("test dataset spec")
}

fn sts_spec() -> StsSpec {
    toml::from_str("score_range = [0.0, 5.0]").expect("test sts spec")
}

fn lines_of(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

// ---------------------------------------------------------------- JSONL, CSV, TSV

const CORPUS: &str = r#"{"_id": "d1", "title": "T", "text": "first doc"}
{"_id": 2, "title": null, "text": "second doc", "extra": [1, 2.5, {"k": "v"}]}
{"_id": "d3", "text": "caf\u00e9 \"quoted\""}
"#;
const QUERIES: &str =
    "{\"_id\": \"q1\", \"text\": \"a query\"}\n{\"_id\": \"q2\", \"text\": \"another\"}\n";
const QRELS: &str = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\t2\t0\n";

#[test]
fn jsonl_lines() {
    fuzz(
        "jsonl",
        0x6a73_6f6e_6c00_0001,
        "proptest-regressions/fuzz_inputs/jsonl.txt",
        vec![lines_of(CORPUS), lines_of(QUERIES)],
        TEXT,
        |bytes| {
            let path = Path::new("data/x.jsonl");
            if let Some(objects) = located(lines::json_objects(path, bytes), "x.jsonl")? {
                for (line, obj) in &objects {
                    for field in ["_id", "text", "score"] {
                        located(lines::str_field(path, *line, obj, field), "x.jsonl")?;
                        located(lines::num_field(path, *line, obj, field), "x.jsonl")?;
                    }
                }
            }
            Ok(())
        },
    );
}

const TABLE_JSONL: &str = r#"{"text": "good film", "label": 1, "scores": [0.5, 1], "texts": ["a", "b"]}
{"text": "bad film", "label": "0", "scores": [2], "texts": []}
"#;

/// Every accessor of a table the eval families call.
fn read_table(file: &str, bytes: &[u8], dataset: &DatasetSpec) -> Result<(), TestCaseError> {
    let path = Path::new("data").join(file);
    if let Some(table) = located(Table::parse(&path, bytes, dataset), file)? {
        for row in &table.rows {
            located(table.text(row, "text"), file)?;
            located(table.number(row, "label"), file)?;
            located(table.numbers(row, "scores"), file)?;
            located(table.texts(row, "texts"), file)?;
        }
    }
    Ok(())
}

#[test]
fn table_jsonl() {
    let spec = dataset("local = 'x'\nsplit = 'test'\nformat = 'table'");
    fuzz(
        "table-jsonl",
        0x7461_626c_6500_0001,
        "proptest-regressions/fuzz_inputs/table-jsonl.txt",
        vec![lines_of(TABLE_JSONL)],
        TEXT,
        |bytes| read_table("t.jsonl", bytes, &spec),
    );
}

#[test]
fn table_csv_with_header() {
    let spec = dataset("local = 'x'\nsplit = 'test'\nformat = 'table'");
    let seeds = vec![
        lines_of("text,label\n\"good, film\",1\nbad film,0\n"),
        lines_of("label,text,other\n1,\"a \"\"quoted\"\" word\",x\r\n0,plain,\r\n"),
    ];
    fuzz(
        "table-csv",
        0x7461_626c_6500_0002,
        "proptest-regressions/fuzz_inputs/table-csv.txt",
        seeds,
        TEXT,
        |bytes| read_table("t.csv", bytes, &spec),
    );
}

#[test]
fn table_tsv_without_header() {
    let spec = dataset(
        "local = 'x'\nsplit = 'test'\nformat = 'table'\ncolumns = ['label', 'text']\nquoting = false",
    );
    fuzz(
        "table-tsv",
        0x7461_626c_6500_0003,
        "proptest-regressions/fuzz_inputs/table-tsv.txt",
        vec![lines_of("1\tgood \"film\"\n0\tbad film\textra\n")],
        TEXT,
        |bytes| read_table("t.tsv", bytes, &spec),
    );
}

#[test]
fn sts_files() {
    let spec = sts_spec();
    let dataset = dataset("local = 'stsb'\nsplit = 'test'\nformat = 'stsb-tsv'");
    let seeds = vec![
        // STS Benchmark's own layout.
        lines_of("main-captions\tMSRvid\t2012test\t0001\t5.000\tA man plays.\tA man is playing.\nmain-news\tx\t2012\t0002\t0.5\tOne.\tTwo.\textra\n"),
        // The same pairs as a CSV table and as JSONL.
        lines_of("sentence1,sentence2,score\nA man plays.,A man is playing.,5\n\"One, two\",Two.,0.5\n"),
        lines_of("{\"sentence1\": \"A\", \"sentence2\": \"B\", \"score\": 4.5}\n{\"sentence1\": \"C\", \"sentence2\": \"D\", \"score\": \"1\"}\n"),
    ];
    fuzz(
        "sts",
        0x7374_7300_0000_0001,
        "proptest-regressions/fuzz_inputs/sts.txt",
        seeds,
        TEXT,
        |bytes| {
            // Every layout reads every input: the seed's own and the others' parsers.
            let own = sts::parse_pairs(Path::new("d/sts-test.csv"), bytes, true, &dataset, &spec);
            located(own, "sts-test.csv")?;
            for file in ["test.csv", "test.jsonl", "test.tsv"] {
                let path = Path::new("d").join(file);
                located(sts::parse_pairs(&path, bytes, false, &dataset, &spec), file)?;
            }
            Ok(())
        },
    );
}

#[test]
fn beir_files() {
    let corpus = beir::parse_corpus(Path::new("c.jsonl"), CORPUS.as_bytes()).unwrap();
    let queries = beir::parse_queries(Path::new("q.jsonl"), QUERIES.as_bytes()).unwrap();
    fuzz(
        "beir",
        0x6265_6972_0000_0001,
        "proptest-regressions/fuzz_inputs/beir.txt",
        vec![lines_of(CORPUS), lines_of(QUERIES), lines_of(QRELS)],
        TEXT,
        |bytes| {
            let dir = Path::new("scifact");
            located(
                beir::parse_corpus(&dir.join("corpus.jsonl"), bytes),
                "corpus.jsonl",
            )?;
            located(
                beir::parse_queries(&dir.join("queries.jsonl"), bytes),
                "queries.jsonl",
            )?;
            let qrels = beir::parse_qrels(&dir.join("qrels/test.tsv"), bytes, &corpus, &queries);
            located(qrels, "qrels/test.tsv")?;
            Ok(())
        },
    );
}

// ---------------------------------------------------------------- TOML

/// The repository's own files of a folder, as seeds.
fn repo_files(dir: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn task_specs() {
    fuzz(
        "task-toml",
        0x7461_736b_0000_0001,
        "proptest-regressions/fuzz_inputs/task-toml.txt",
        repo_files("tasks"),
        TEXT,
        |bytes| {
            let result = TaskSpec::parse(Path::new("tasks/t.toml"), bytes);
            if let Err(e) = &result {
                prop_assert!(matches!(e, Error::Spec { .. }), "{e:?}");
            }
            names_file(result, "tasks/t.toml")?;
            Ok(())
        },
    );
}

#[test]
fn suite_specs() {
    fuzz(
        "suite-toml",
        0x7375_6974_6500_0001,
        "proptest-regressions/fuzz_inputs/suite-toml.txt",
        repo_files("tasks/suites"),
        TEXT,
        |bytes| {
            let result = SuiteSpec::parse(Path::new("suites/s.toml"), bytes);
            if let Err(e) = &result {
                prop_assert!(matches!(e, Error::Spec { .. }), "{e:?}");
            }
            names_file(result, "suites/s.toml")?;
            Ok(())
        },
    );
}

#[test]
fn gate_rules() {
    fuzz(
        "gate-toml",
        0x6761_7465_0000_0001,
        "proptest-regressions/fuzz_inputs/gate-toml.txt",
        repo_files("gates"),
        TEXT,
        |bytes| {
            names_file(
                assay::gate::parse_rules(Path::new("gates/g.toml"), bytes),
                "gates/g.toml",
            )?;
            Ok(())
        },
    );
}

// ---------------------------------------------------------------- images

fn jpeg(width: usize, height: usize, gray: bool) -> Vec<u8> {
    let space = if gray {
        mozjpeg::ColorSpace::JCS_GRAYSCALE
    } else {
        mozjpeg::ColorSpace::JCS_RGB
    };
    let channels = if gray { 1 } else { 3 };
    let pixels: Vec<u8> = (0..width * height * channels)
        .map(|i| (i * 37 % 251) as u8)
        .collect();
    let mut c = mozjpeg::Compress::new(space);
    c.set_size(width, height);
    c.set_quality(80.0);
    let mut started = c.start_compress(Vec::new()).unwrap();
    started.write_scanlines(&pixels).unwrap();
    started.finish().unwrap()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 20) as u8, ((x + y) * 7) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn image_files() {
    let seeds = vec![jpeg(16, 12, false), jpeg(9, 7, true), png(8, 6)];
    fuzz(
        "image",
        0x696d_6167_6500_0001,
        "proptest-regressions/fuzz_inputs/image.txt",
        seeds,
        BINARY,
        |bytes| {
            let path = Path::new("images/x.img");
            if let Some(image) = located(ImageInput::from_bytes(path, bytes.to_vec()), "x.img")? {
                if let Some(rgb) = located(Rgb::decode(&image), "x.img")? {
                    prop_assert_eq!(rgb.data.len(), rgb.width * rgb.height * 3);
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------- model files

/// A small GGUF: llama metadata of every value type (arrays nested once) and two tensors.
fn gguf(version: u32) -> Vec<u8> {
    let long = version >= 2;
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    let len = |b: &mut Vec<u8>, n: usize| {
        if long {
            b.extend((n as u64).to_le_bytes());
        } else {
            b.extend((n as u32).to_le_bytes());
        }
    };
    let string = |b: &mut Vec<u8>, s: &str| {
        len(b, s.len());
        b.extend(s.as_bytes());
    };
    let entries: Vec<(&str, u32, Vec<u8>)> = vec![
        ("general.architecture", 8, {
            let mut v = Vec::new();
            string(&mut v, "llama");
            v
        }),
        ("general.alignment", 4, 32u32.to_le_bytes().to_vec()),
        ("llama.block_count", 4, 1u32.to_le_bytes().to_vec()),
        ("llama.embedding_length", 4, 32u32.to_le_bytes().to_vec()),
        ("llama.attention.head_count", 4, 2u32.to_le_bytes().to_vec()),
        ("llama.context_length", 10, 64u64.to_le_bytes().to_vec()),
        ("llama.rope.freq_base", 6, 10000f32.to_le_bytes().to_vec()),
        ("tokenizer.ggml.add_bos_token", 7, vec![1]),
        ("tokenizer.ggml.tokens", 9, {
            let mut v = 8u32.to_le_bytes().to_vec();
            len(&mut v, 3);
            for t in ["<s>", "a", "b\0"] {
                string(&mut v, t);
            }
            v
        }),
        ("nested", 9, {
            let mut v = 9u32.to_le_bytes().to_vec();
            len(&mut v, 1);
            v.extend(5u32.to_le_bytes());
            len(&mut v, 2);
            v.extend((-1i32).to_le_bytes());
            v.extend(7i32.to_le_bytes());
            v
        }),
        ("misc", 12, 0.5f64.to_le_bytes().to_vec()),
    ];
    // (name, dims as GGUF lists them, ggml type, bytes)
    let tensors: [(&str, &[u64], u32, usize); 2] = [
        ("token_embd.weight", &[32, 4], 2, 4 * 18),
        ("output_norm.weight", &[32], 0, 32 * 4),
    ];
    len(&mut b, tensors.len());
    len(&mut b, entries.len());
    for (key, kind, value) in &entries {
        string(&mut b, key);
        b.extend(kind.to_le_bytes());
        b.extend(value);
    }
    let mut offset = 0;
    for (name, dims, kind, bytes) in &tensors {
        string(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for &d in *dims {
            len(&mut b, d as usize);
        }
        b.extend(kind.to_le_bytes());
        b.extend((offset as u64).to_le_bytes());
        offset = (offset + bytes).next_multiple_of(32);
    }
    b.resize(b.len().next_multiple_of(32) + offset, 0x11);
    b
}

#[test]
fn gguf_headers() {
    let path = Path::new("models/m.gguf");
    for version in [1, 2, 3] {
        let content = gguf_header::parse(path, &gguf(version)).unwrap();
        assert_eq!(content.tensor_infos.len(), 2);
        gguf_header::check_sizes(&content, "llama").unwrap();
    }
    fuzz(
        "gguf",
        0x6767_7566_0000_0001,
        "proptest-regressions/fuzz_inputs/gguf.txt",
        vec![gguf(1), gguf(2), gguf(3)],
        BINARY,
        |bytes| {
            if let Some(content) = names_file(gguf_header::parse(path, bytes), "m.gguf")? {
                let size = bytes.len() as u64;
                for info in content.tensor_infos.values() {
                    let start = content.tensor_data_offset + info.offset;
                    prop_assert!(start <= size);
                    // What candle reads for the tensor: inside the file.
                    let elements: usize = info.shape.dims().iter().product();
                    let dtype = info.ggml_dtype;
                    let need = elements / dtype.block_size() * dtype.type_size();
                    prop_assert!(start + need as u64 <= size);
                }
                let _ = gguf_header::check_sizes(&content, "llama");
            }
            Ok(())
        },
    );
}

fn safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend(header.as_bytes());
    b.extend((0..data).map(|i| (i * 13) as u8));
    b
}

#[test]
fn safetensors_headers() {
    let seeds = vec![
        safetensors(
            r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[24,30]}}"#,
            30,
        ),
        safetensors(
            r#"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"m":{"dtype":"U8","shape":[2,2],"data_offsets":[8,12]},"e":{"dtype":"F16","shape":[0],"data_offsets":[12,12]}}"#,
            12,
        ),
    ];
    let device = candle_core::Device::Cpu;
    fuzz(
        "safetensors",
        0x7361_6665_0000_0001,
        "proptest-regressions/fuzz_inputs/safetensors.txt",
        seeds,
        BINARY,
        |bytes| {
            let path = Path::new("m/model.safetensors");
            let checked = safetensors_header::check_bytes(path, bytes);
            if names_file(checked, "model.safetensors")?.is_some() {
                // What candle then does with a checked file: every tensor loads or errs.
                if let Ok(st) = candle_core::safetensors::SliceSafetensors::new(bytes) {
                    for (name, _) in st.tensors() {
                        let _ = st.load(&name, &device);
                    }
                }
            }
            Ok(())
        },
    );
}

const WORDPIECE: &str = r###"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[{"id":0,"content":"[PAD]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":2,"content":"[CLS]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
{"id":3,"content":"[SEP]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true},
"pre_tokenizer":{"type":"BertPreTokenizer"},
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}}],
"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
"special_tokens":{"[CLS]":{"id":"[CLS]","ids":[2],"tokens":["[CLS]"]},"[SEP]":{"id":"[SEP]","ids":[3],"tokens":["[SEP]"]}}},
"decoder":{"type":"WordPiece","prefix":"##","cleanup":true},
"model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,
"vocab":{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"the":4,"cat":5,"##s":6,"a":7}}}"###;

const BPE: &str = r###"{"version":"1.0","truncation":{"direction":"Right","max_length":8,"strategy":"LongestFirst","stride":0},"padding":null,
"added_tokens":[{"id":3,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
"post_processor":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true},
"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
"vocab":{"a":0,"b":1,"ab":2,"<s>":3,"Ġ":4},"merges":["a b"]}}"###;

#[test]
fn tokenizer_files() {
    let path = Path::new("m/tokenizer.json");
    for seed in [WORDPIECE, BPE] {
        candle_load::parse_tokenizer(path, seed.as_bytes()).unwrap();
    }
    fuzz(
        "tokenizer",
        0x746f_6b65_6e00_0001,
        "proptest-regressions/fuzz_inputs/tokenizer.txt",
        vec![lines_of(WORDPIECE), lines_of(BPE)],
        TEXT,
        |bytes| {
            let parsed = candle_load::parse_tokenizer(path, bytes);
            if let Some(tokenizer) = names_file(parsed, "tokenizer.json")? {
                // A tokenizer that loads is used: encoding must not panic either.
                for special in [true, false] {
                    if let Ok(e) = tokenizer.encode("The cats ab a b", special) {
                        let _ = tokenizer.decode(e.get_ids(), special);
                    }
                    let _ = tokenizer.encode(("the", "cat"), special);
                }
            }
            Ok(())
        },
    );
}

/// Found by `tokenizer_files`: a template naming a special token the file does not
/// define loads, then panics on the first encode (tokenizers 0.23.2).
#[test]
fn tokenizer_template_with_undefined_special_token() {
    let bytes = WORDPIECE.replace(r#""[SEP]":{"id":"[SEP]""#, r#""[X]":{"id":"[SEP]""#);
    assert_ne!(bytes, WORDPIECE);
    let err = candle_load::parse_tokenizer(Path::new("m/tokenizer.json"), bytes.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m/tokenizer.json") && err.contains("probe"),
        "{err}"
    );
}

/// Found by `tokenizer_files`: a decoder that is neither tagged nor a known legacy form
/// trips an `expect` inside the tokenizers crate's deserializer.
#[test]
fn tokenizer_with_malformed_decoder() {
    let bytes = WORDPIECE.replace(
        r###""decoder":{"type":"WordPiece","prefix":"##","cleanup":true}"###,
        r#""decoder":7"#,
    );
    assert_ne!(bytes, WORDPIECE);
    let err = candle_load::parse_tokenizer(Path::new("m/tokenizer.json"), bytes.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("m/tokenizer.json"), "{err}");
}

/// The checked readers accept real files as the third-party ones read them.
#[test]
fn real_model_files_pass_the_checks() {
    let gguf = common::smollm2_gguf();
    let ours = gguf_header::read(&gguf).unwrap();
    let mut file = std::fs::File::open(&gguf).unwrap();
    let theirs = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    assert_eq!(ours.tensor_data_offset, theirs.tensor_data_offset);
    assert_eq!(ours.metadata.len(), theirs.metadata.len());
    assert_eq!(ours.tensor_infos.len(), theirs.tensor_infos.len());
    for (name, info) in &theirs.tensor_infos {
        let mine = &ours.tensor_infos[name];
        assert_eq!(
            (mine.shape.dims(), mine.offset),
            (info.shape.dims(), info.offset)
        );
        assert_eq!(mine.ggml_dtype, info.ggml_dtype);
    }
    gguf_header::check_sizes(&ours, "llama").unwrap();
    let minilm = common::minilm();
    safetensors_header::check_file(&minilm.join("model.safetensors")).unwrap();
    candle_load::read_tokenizer(&minilm.join("tokenizer.json")).unwrap();
}

// ---------------------------------------------------------------- the binary

/// The CLI's contract on a malformed file: exit 2, the file named, no panic.
fn expect_clean_error(cmd: &mut std::process::Command, file: &Path) {
    let (code, stdout, stderr) = common::output(cmd);
    assert_eq!(code, 2, "exit code; stderr: {stderr}\nstdout: {stdout}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(stderr.contains(&*name), "stderr names {name}: {stderr}");
}

#[test]
fn cli_malformed_task_spec() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.toml");
    std::fs::write(&bad, "name = \"x\"\ndescription = 1e999999\n[dataset\n").unwrap();
    expect_clean_error(
        common::assay()
            .arg("tasks")
            .arg("--tasks-dir")
            .arg(dir.path()),
        &bad,
    );
}

#[test]
fn cli_malformed_gate_rules() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("rules.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nmetric = \"stsb.cosine_spearman\"\nmax_drop = -1\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    expect_clean_error(
        common::assay()
            .arg("gate")
            .arg("--rules")
            .arg(&bad)
            .arg(&run),
        &bad,
    );
}

#[test]
fn cli_malformed_gguf() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), WORDPIECE).unwrap();
    // general.alignment = 0: candle's own reader divides by it.
    let mut bytes = gguf(3);
    let key = b"general.alignment";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    bytes[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
    let bad = dir.path().join("broken.gguf");
    std::fs::write(&bad, &bytes).unwrap();
    expect_clean_error(
        common::assay()
            .args(["generate", "--prompt", "hi", "--model"])
            .arg(format!("dir:{}", bad.display())),
        &bad,
    );
}

#[path = "fuzz/remote.rs"]
mod remote;
