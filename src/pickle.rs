//! diffusers' older weight files, `diffusion_pytorch_model.bin` (`torch.save` of the state dict),
//! read without PyTorch by burn's `pytorch-reader` (no Python code runs: its unpickler builds
//! only tensors, storages and dicts) and handed on as safetensors bytes, so the one loader
//! (`weights.rs`) checks names, shapes and values. The same code runs in the CLI and the wasm.

use std::borrow::Cow;
use std::cell::RefCell;

use pytorch_reader::{DType, PytorchReader, Tensor};
use safetensors::{Dtype, View};

use crate::error::{Error, Result};

/// The tensors of a `torch.save`d state dict (the ZIP container every `.bin` on the Hub uses),
/// serialized as safetensors. `file` names the file in errors.
///
/// The reader holds the `.bin`; each tensor is read from it only as the safetensors bytes are
/// written, so the peak is the two files plus one tensor, not three copies of the weights.
pub fn to_safetensors(file: &str, bin: Vec<u8>) -> Result<Vec<u8>> {
    let not_read = |e: &dyn std::fmt::Display| {
        Error::io(file, format!("not a PyTorch weights file (torch.save) that can be read: {e}"))
    };
    let reader = PytorchReader::from_zip_bytes(bin, None).map_err(|e| not_read(&e))?;
    if reader.is_empty() {
        return Err(Error::io(file, "holds no tensors (expected a UNet2DModel state dict)"));
    }
    let failed = RefCell::new(None);
    let mut tensors: Vec<(&String, Lazy)> =
        reader.tensors().iter().map(|(name, t)| (name, Lazy { t, name, failed: &failed })).collect();
    // safetensors sorts by dtype and name itself; a fixed order keeps the output reproducible.
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), None)
        .map_err(|e| Error::Safetensors { file: file.to_string(), message: e.to_string() })?;
    match failed.into_inner() {
        Some(message) => Err(Error::io(file, message)),
        None => Ok(bytes),
    }
}

/// One tensor of the `.bin`, read when the serializer asks for its bytes. A read that fails
/// leaves zeros of the right length and its message in `failed`, which `to_safetensors` returns
/// in place of the output (`View::data` cannot fail).
struct Lazy<'a> {
    t: &'a Tensor,
    name: &'a str,
    failed: &'a RefCell<Option<String>>,
}

impl View for &Lazy<'_> {
    fn dtype(&self) -> Dtype {
        dtype(self.t.dtype())
    }
    fn shape(&self) -> &[usize] {
        self.t.shape()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        // pytorch-reader gives row-major bytes in the host's byte order: little-endian on every
        // target this crate builds for, as safetensors stores them.
        match self.t.read() {
            Ok(bytes) if bytes.len() == self.t.byte_len() => Cow::Owned(bytes),
            Ok(bytes) => {
                self.fail(format!("{} bytes where its shape needs {}", bytes.len(), self.t.byte_len()))
            }
            Err(e) => self.fail(e.to_string()),
        }
    }
    fn data_len(&self) -> usize {
        self.t.byte_len()
    }
}

impl Lazy<'_> {
    fn fail(&self, message: String) -> Cow<'_, [u8]> {
        self.failed.borrow_mut().get_or_insert_with(|| format!("tensor {}: {message}", self.name));
        Cow::Owned(vec![0; self.t.byte_len()])
    }
}

fn dtype(d: DType) -> Dtype {
    match d {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U64 => Dtype::U64,
        DType::U32 => Dtype::U32,
        DType::U16 => Dtype::U16,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}
