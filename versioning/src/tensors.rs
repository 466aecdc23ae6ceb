//! Tensors in memory, and their safetensors files.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use bytes::Bytes;

use crate::chunking::tensor_len;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// One tensor's data: little-endian, C order, as in safetensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorData {
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost dimension first.
    pub shape: Vec<u64>,
    /// The bytes: exactly `size(dtype) * product(shape)`.
    pub data: Bytes,
}

/// A model state in memory, by tensor name.
pub type Tensors = BTreeMap<String, TensorData>;

impl TensorData {
    /// A tensor, checked: the data length must match dtype and shape.
    pub fn new(
        name: &str,
        dtype: DType,
        shape: Vec<u64>,
        data: impl Into<Bytes>,
    ) -> Result<TensorData> {
        let t = TensorData {
            dtype,
            shape,
            data: data.into(),
        };
        t.check(name)?;
        Ok(t)
    }

    /// Checks the data length against dtype and shape.
    pub fn check(&self, name: &str) -> Result<()> {
        let expected = tensor_len(self.dtype, &self.shape);
        if expected != Some(self.data.len() as u64) {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                dtype: self.dtype.to_string(),
                shape: self.shape.clone(),
                expected: expected.unwrap_or(u64::MAX),
                got: self.data.len() as u64,
            });
        }
        Ok(())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The free-form `__metadata__` of a safetensors file (text to text).
pub type FileMetadata = BTreeMap<String, String>;

/// Reads a safetensors file. A corrupt or truncated file, an unsupported dtype or a tensor
/// whose bytes do not match its shape is an error naming the file.
pub fn read_safetensors(path: &Path) -> Result<Tensors> {
    Ok(read_safetensors_with_metadata(path)?.0)
}

/// [`read_safetensors`], also returning the file's `__metadata__`, if it has one.
pub fn read_safetensors_with_metadata(path: &Path) -> Result<(Tensors, Option<FileMetadata>)> {
    let bytes = fs::read(path).map_err(Error::io(path))?;
    let tensors = parse_safetensors(path, &bytes)?;
    // Parsed again (the header only): cheap next to the copy of every tensor above.
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    Ok((tensors, metadata))
}

/// Parses safetensors bytes; `path` only names the source in errors.
pub fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<Tensors> {
    let bad = |reason: String| Error::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Tensors::new();
    for (name, view) in st.iter() {
        let dtype = DType::try_from(view.dtype()).map_err(|d| Error::UnsupportedDtype {
            name: name.to_string(),
            dtype: d,
        })?;
        let shape = view.shape().iter().map(|&d| d as u64).collect();
        let t = TensorData::new(name, dtype, shape, Bytes::copy_from_slice(view.data()))?;
        out.insert(name.to_string(), t);
    }
    Ok(out)
}

struct View<'a>(&'a TensorData, Vec<usize>);

impl safetensors::View for View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.0.dtype.into()
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0.data)
    }
    fn data_len(&self) -> usize {
        self.0.data.len()
    }
}

/// Writes tensors as a safetensors file, atomically: a temporary file next to `path` is
/// written, fsynced and renamed over it, so `path` is never left half-written.
pub fn write_safetensors(path: &Path, tensors: &Tensors) -> Result<()> {
    write_safetensors_with_metadata(path, tensors, None)
}

/// [`write_safetensors`] with a `__metadata__` in the header.
pub fn write_safetensors_with_metadata(
    path: &Path,
    tensors: &Tensors,
    metadata: Option<&FileMetadata>,
) -> Result<()> {
    let metadata: Option<std::collections::HashMap<String, String>> =
        metadata.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let views = tensors
        .iter()
        .map(|(name, t)| {
            let shape = t
                .shape
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| Error::ShapeMismatch {
                    name: name.clone(),
                    dtype: t.dtype.to_string(),
                    shape: t.shape.clone(),
                    expected: u64::MAX,
                    got: t.data.len() as u64,
                })?;
            Ok((name.as_str(), View(t, shape)))
        })
        .collect::<Result<Vec<_>>>()?;
    let tmp = temp_path(path);
    let result = safetensors::serialize_to_file(views, metadata, &tmp)
        .map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
        .and_then(|()| {
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|()| fs::rename(&tmp, path))
                .map_err(Error::io(path))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The temporary file a file written atomically is built in before it is renamed to
/// `path`: next to it (the rename stays within one file system), hidden, and named after
/// this process so that two writers of one path do not share it.
pub(crate) fn temp_path(path: &Path) -> std::path::PathBuf {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()))
}

/// What the header of a safetensors file says of one tensor.
pub(crate) struct HeaderEntry<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Its element type.
    pub dtype: DType,
    /// Its shape.
    pub shape: &'a [u64],
    /// Its length in bytes.
    pub len: u64,
}

/// A tensor of a header: dtype, shape and length, and no bytes.
struct HeaderView(DType, Vec<usize>, usize);

impl safetensors::View for HeaderView {
    fn dtype(&self) -> safetensors::Dtype {
        self.0.into()
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&[])
    }
    fn data_len(&self) -> usize {
        self.2
    }
}

/// The bytes before the tensor data of the file [`write_safetensors_with_metadata`]
/// writes for tensors like `entries` (the header's length, then the padded JSON header),
/// and the order of the entries' data after it (indices into `entries`). The header comes
/// from the safetensors crate's own serializer, fed views of the right length that hold
/// no bytes, so it is byte for byte the one that function writes; the order is that
/// serializer's (by descending dtype, then name; pinned by a test comparing whole files).
pub(crate) fn safetensors_prefix(
    entries: &[HeaderEntry<'_>],
    metadata: Option<&FileMetadata>,
) -> Result<(Vec<u8>, Vec<usize>)> {
    let too_large = |e: &HeaderEntry<'_>| Error::ShapeMismatch {
        name: e.name.to_string(),
        dtype: e.dtype.to_string(),
        shape: e.shape.to_vec(),
        expected: u64::MAX,
        got: e.len,
    };
    let views = entries
        .iter()
        .map(|e| {
            let shape = e
                .shape
                .iter()
                .map(|&d| usize::try_from(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| too_large(e))?;
            let len = usize::try_from(e.len).map_err(|_| too_large(e))?;
            Ok((e.name, HeaderView(e.dtype, shape, len)))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata: Option<std::collections::HashMap<String, String>> =
        metadata.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let prefix = safetensors::serialize(views, metadata).map_err(|e| Error::Safetensors {
        path: std::path::PathBuf::new(),
        reason: e.to_string(),
    })?;
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&l, &r| {
        let dtype = |i: usize| safetensors::Dtype::from(entries[i].dtype);
        dtype(r)
            .cmp(&dtype(l))
            .then(entries[l].name.cmp(entries[r].name))
    });
    Ok((prefix, order))
}
