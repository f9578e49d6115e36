//! An image as an embedder receives it: the encoded file (JPEG or PNG) and where it came
//! from. Local engines decode it; remote engines send it as a `data:` URL.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct ImageInput {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// `image/jpeg` or `image/png`, from the file's signature.
    pub mime: &'static str,
}

impl ImageInput {
    /// Reads an image file; anything but JPEG or PNG is an error naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, bytes)
    }

    /// An image file's bytes (`path` names it in errors).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let mime = mime_of(&bytes).ok_or_else(|| {
            Error::input(path, "not a JPEG or PNG image (unknown file signature)")
        })?;
        Ok(ImageInput {
            path: path.to_path_buf(),
            bytes,
            mime,
        })
    }

    /// `data:<mime>;base64,<bytes>`: how OpenAI-style APIs take an inline image.
    pub fn data_url(&self) -> String {
        format!(
            "data:{};base64,{}",
            self.mime,
            base64::engine::general_purpose::STANDARD.encode(&self.bytes)
        )
    }
}

fn mime_of(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_data_urls() {
        assert_eq!(mime_of(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(mime_of(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(mime_of(b"GIF89a"), None);
        let image = ImageInput {
            path: "x.png".into(),
            bytes: b"\x89PNG\r\n\x1a\n".to_vec(),
            mime: "image/png",
        };
        assert_eq!(image.data_url(), "data:image/png;base64,iVBORw0KGgo=");
        let dir = tempfile::tempdir().unwrap();
        let gif = dir.path().join("a.gif");
        std::fs::write(&gif, b"GIF89a").unwrap();
        let err = ImageInput::read(&gif).unwrap_err().to_string();
        assert!(
            err.contains("a.gif") && err.contains("not a JPEG or PNG"),
            "{err}"
        );
    }
}
