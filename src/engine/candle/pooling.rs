//! Turning a sequence of hidden states into one vector.

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Average over the real (non-padding) tokens.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// The last real token (decoder embedders; needs the padding side known).
    LastToken,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "last-token" | "last_token" | "lasttoken" => Ok(Pooling::LastToken),
            _ => Err(format!(
                "unknown pooling `{s}`: expected mean, cls or last-token"
            )),
        }
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::LastToken => "last-token",
        })
    }
}

impl Pooling {
    /// `hidden`: (batch, seq, dim); `mask`: (batch, seq) of 0/1 with right padding.
    /// Returns (batch, dim) in f32.
    pub fn apply(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let hidden = hidden.to_dtype(DType::F32)?;
        let mask = mask.to_dtype(DType::F32)?;
        let pooled = match self {
            Pooling::Mean => {
                let summed = hidden.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
                let counts = mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::LastToken => {
                // Index of the last real token of each row (right padding).
                let last = (mask.sum(1)? - 1.0)?.to_dtype(DType::U32)?;
                let index = last
                    .reshape((hidden.dim(0)?, 1, 1))?
                    .broadcast_as((hidden.dim(0)?, 1, hidden.dim(2)?))?
                    .contiguous()?;
                hidden.contiguous()?.gather(&index, 1)?.squeeze(1)?
            }
        };
        Ok(pooled)
    }
}

/// Scales each row to unit L2 norm.
pub fn normalize(rows: &Tensor) -> Result<Tensor> {
    let norms = rows
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    Ok(rows.broadcast_div(&norms)?)
}
