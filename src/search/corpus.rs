//! What the search reads documents from: rows of f32, fetched a chunk at a time so a
//! corpus never needs to be held (or copied) whole.

use crate::error::{Error, Result};

/// A corpus of `len()` rows of `dim()` values each.
pub trait Corpus: Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dim(&self) -> usize;

    /// Copies rows `start..start + out.len() / stride` as f32 into `out`, row `i` at
    /// `out[i * stride..][..dim]`. The rest of each row (`dim..stride`) is left as is.
    fn read_rows(&self, start: usize, stride: usize, out: &mut [f32]);

    /// Rows `rows` have been scored and will not be read again soon: a memory-mapped corpus
    /// drops them from resident memory.
    fn release(&self, _rows: std::ops::Range<usize>) {}

    /// Checks that every row has `dim()` values (an in-memory corpus can be ragged).
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

impl Corpus for [Vec<f32>] {
    fn len(&self) -> usize {
        <[Vec<f32>]>::len(self)
    }

    fn dim(&self) -> usize {
        self.first().map_or(0, Vec::len)
    }

    fn read_rows(&self, start: usize, stride: usize, out: &mut [f32]) {
        for (row, slot) in self[start..].iter().zip(out.chunks_exact_mut(stride)) {
            slot[..row.len()].copy_from_slice(row);
        }
    }

    fn check(&self) -> Result<()> {
        let dim = Corpus::dim(self);
        match self.iter().position(|row| row.len() != dim) {
            None => Ok(()),
            Some(i) => Err(Error::Usage(format!(
                "search: corpus row {i} has {} values, row 0 has {dim}",
                self[i].len()
            ))),
        }
    }
}

impl Corpus for Vec<Vec<f32>> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn dim(&self) -> usize {
        Corpus::dim(self.as_slice())
    }

    fn read_rows(&self, start: usize, stride: usize, out: &mut [f32]) {
        self.as_slice().read_rows(start, stride, out)
    }

    fn check(&self) -> Result<()> {
        self.as_slice().check()
    }
}
