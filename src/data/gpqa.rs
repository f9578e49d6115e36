//! GPQA (Rein et al. 2023): four-way multiple choice, one CSV per subset (`gpqa_main`,
//! `gpqa_diamond`, `gpqa_extended`), with the correct answer and three incorrect ones in
//! their own columns. Read from the authors' password-protected `dataset.zip`, an
//! extracted CSV, or the gated hub dataset `Idavidrein/gpqa` (HF_TOKEN). Questions are
//! never printed: errors name the file, row and column only.

use std::io::Read;
use std::path::Path;

use crate::data::generation::{GenerationData, Loaded};
use crate::data::lines::{read_bytes, sha256_hex};
use crate::data::DataSource;
use crate::error::{Error, Result};
use crate::spec::{DatasetSpec, GpqaSpec};

/// The variable holding the zip's password.
pub const PASSWORD_ENV: &str = "ASSAY_GPQA_PASSWORD";

/// One question.
#[derive(Debug, Clone)]
pub struct GpqaItem {
    /// `Record ID`.
    pub id: String,
    pub question: String,
    pub correct: String,
    pub incorrect: [String; 3],
    pub domain: String,
}

const COLUMNS: [&str; 5] = [
    "Question",
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
];

/// Parses a GPQA CSV (quoted fields spanning lines, as the official files have).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<GpqaItem>> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| Error::input(path, format!("unreadable header: {}", csv_message(&e))))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| Error::input(path, format!("no `{name}` column: not a GPQA CSV")))
    };
    let at: Vec<usize> = COLUMNS.iter().map(|c| column(c)).collect::<Result<_>>()?;
    let id_at = headers.iter().position(|h| h.trim() == "Record ID");
    let domain_at = headers.iter().position(|h| h.trim() == "High-level domain");
    let mut items = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(row + 2, |p| p.line() as usize);
            Error::record(path, line, "row", csv_message(&e))
        })?;
        let line = record.position().map_or(row + 2, |p| p.line() as usize);
        let field = |i: usize, name: &str| -> Result<String> {
            let value = record.get(i).unwrap_or("").trim();
            if value.is_empty() {
                Err(Error::record(path, line, name, "empty"))
            } else {
                Ok(value.to_string())
            }
        };
        items.push(GpqaItem {
            id: match id_at {
                Some(i) => field(i, "Record ID")?,
                None => format!("row{}", row + 1),
            },
            question: field(at[0], COLUMNS[0])?,
            correct: field(at[1], COLUMNS[1])?,
            incorrect: [
                field(at[2], COLUMNS[2])?,
                field(at[3], COLUMNS[3])?,
                field(at[4], COLUMNS[4])?,
            ],
            domain: domain_at
                .and_then(|i| record.get(i))
                .unwrap_or("")
                .trim()
                .to_string(),
        });
    }
    if items.is_empty() {
        return Err(Error::input(path, "no questions"));
    }
    Ok(items)
}

/// A csv error without the field contents it may quote.
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
        _ => "malformed CSV".into(),
    }
}

/// The CSV of a subset out of the official zip, decrypted with `password`.
pub fn from_zip(zip_path: &Path, file: &str, password: Option<&str>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(zip_path).map_err(|e| Error::io(zip_path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::input(zip_path, format!("not a readable zip archive: {e}")))?;
    let name = archive
        .file_names()
        .find(|n| *n == file || n.ends_with(&format!("/{file}")))
        .map(str::to_string)
        .ok_or_else(|| Error::input(zip_path, format!("holds no `{file}`")))?;
    let password = password.ok_or_else(|| {
        Error::Usage(format!(
            "{}: the GPQA archive is password-protected: set {PASSWORD_ENV} (the authors publish the password in the README of github.com/idavidrein/gpqa)",
            zip_path.display()
        ))
    })?;
    let mut entry = archive
        .by_name_decrypt(&name, password.as_bytes())
        .map_err(|e| match e {
            zip::result::ZipError::InvalidPassword => Error::Usage(format!(
                "{}: wrong password for `{name}` ({PASSWORD_ENV})",
                zip_path.display()
            )),
            other => Error::input(zip_path, format!("`{name}`: {other}")),
        })?;
    let mut out = Vec::new();
    entry.read_to_end(&mut out).map_err(|e| {
        // ZipCrypto's one-byte check passes 1 wrong password in 256; the CRC then fails.
        Error::Usage(format!(
            "{}: `{name}` did not decrypt ({e}): wrong password ({PASSWORD_ENV})?",
            zip_path.display()
        ))
    })?;
    Ok(out)
}

/// The subset's questions: `<folder>/<file>` if extracted, else out of `<folder>/<zip>`;
/// from the hub, `<file>` of the gated dataset.
pub fn load_gpqa(spec: &DatasetSpec, section: &GpqaSpec, source: &DataSource) -> Result<Loaded> {
    let file = source.split_file(spec, &format!("gpqa_{}.csv", section.variant));
    let (path, bytes) = match source {
        DataSource::Local(dir)
            if !dir.join(&file).is_file() && dir.join(&section.zip).is_file() =>
        {
            let zip = dir.join(&section.zip);
            let password = std::env::var(PASSWORD_ENV).ok();
            let bytes = from_zip(&zip, &file, password.as_deref())?;
            (zip.join(&file), bytes)
        }
        _ => {
            let path = source.file(&file)?;
            let bytes = read_bytes(&path)?;
            (path, bytes)
        }
    };
    Ok(Loaded {
        data: GenerationData::Gpqa(parse(&path, &bytes)?),
        origin: source.describe(),
        fingerprint: sha256_hex(&bytes),
    })
}
