//! NumPy `.npy` files (format 1.0 to 3.0, C order, little-endian `f4`, `f8`, `f2`, `i4`,
//! `i8`, `b1`): what the command line reads inputs from and writes outputs to.

use crate::error::{Error, Result};
use crate::runtime::NdArray;
use crate::te::DType;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

fn descr(dt: DType) -> Option<&'static str> {
    Some(match dt {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
        DType::BF16 => return None,
    })
}

fn dtype_of(d: &str) -> Option<DType> {
    Some(match d {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<f2" => DType::F16,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|b1" | "<b1" => DType::Bool,
        _ => return None,
    })
}

/// The `.npy` bytes of `a` (format 1.0).
pub fn to_bytes(a: &NdArray) -> Result<Vec<u8>> {
    let d = descr(a.dtype()).ok_or_else(|| {
        Error::Argument(format!(
            "{} arrays have no .npy type; cast to float32 first",
            a.dtype()
        ))
    })?;
    let shape = match a.shape() {
        [n] => format!("({},)", n),
        s => format!(
            "({})",
            s.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        d, shape
    );
    // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&a.to_le_bytes());
    Ok(out)
}

/// Write `a` to `path` as `.npy`.
pub fn save(path: impl AsRef<Path>, a: &NdArray) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, to_bytes(a)?)
        .map_err(|e| Error::Argument(format!("cannot write {}: {}", path.display(), e)))
}

/// Read a `.npy` file.
pub fn load(path: impl AsRef<Path>) -> Result<NdArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Argument(format!("cannot read {}: {}", path.display(), e)))?;
    from_bytes(&bytes).map_err(|e| match e {
        Error::Argument(m) => Error::Argument(format!("{}: {}", path.display(), m)),
        e => e,
    })
}

/// Parse `.npy` bytes.
pub fn from_bytes(b: &[u8]) -> Result<NdArray> {
    let bad = |m: &str| Error::Argument(format!("not a readable .npy file: {}", m));
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err(bad("it does not start with \\x93NUMPY"));
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        _ => return Err(bad("unknown format version")),
    };
    let header = b
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{}'", key))?;
        let rest = header[i + key.len() + 2..].trim_start().strip_prefix(':')?;
        Some(rest.trim_start())
    };
    let d = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("no descr"))?;
    let dtype = dtype_of(d).ok_or_else(|| {
        Error::Argument(format!(
            "the .npy element type {} is not supported (float32, float64, float16, int32, int64, bool, little-endian)",
            d
        ))
    })?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad("Fortran order; save a C-ordered array"));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape = shape_text
        .split(',')
        .map(|x| x.trim())
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad("malformed shape"))?;
    let n: usize = shape.iter().product();
    let data = &b[start + hlen..];
    let want = n * dtype.bytes();
    if data.len() != want {
        return Err(bad(&format!(
            "{} data bytes for shape {:?} of {}, which needs {}",
            data.len(),
            shape,
            dtype,
            want
        )));
    }
    NdArray::from_le_bytes(&shape, dtype, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        for (shape, dt) in [
            (vec![2usize, 3], DType::F32),
            (vec![5], DType::I64),
            (vec![], DType::F64),
            (vec![1, 2, 1], DType::F16),
        ] {
            let a = NdArray::random(&shape, dt, 3);
            let b = to_bytes(&a).unwrap();
            assert_eq!((10 + u16::from_le_bytes([b[8], b[9]]) as usize) % 64, 0);
            let r = from_bytes(&b).unwrap();
            assert_eq!(r.shape(), a.shape());
            assert_eq!(r.dtype(), dt);
            assert_eq!(r.as_bytes(), a.as_bytes());
        }
        let b = to_bytes(&NdArray::random(&[4], DType::F32, 1)).unwrap();
        assert!(from_bytes(&b[..b.len() - 1]).is_err());
        assert!(from_bytes(b"garbage").is_err());
        // What numpy 1.x writes for np.arange(6, dtype='<f4').reshape(2, 3).
        let mut np = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        np.extend_from_slice(format!("{:<117}\n", h).as_bytes());
        for i in 0..6 {
            np.extend_from_slice(&(i as f32).to_le_bytes());
        }
        let a = from_bytes(&np).unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(
            a.to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
    }
}
