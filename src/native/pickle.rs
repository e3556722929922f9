//! diffusers' older weight files, `diffusion_pytorch_model.bin` (`torch.save` of the state dict),
//! read without PyTorch by burn's `pytorch-reader` (no Python code runs) and handed on as
//! safetensors bytes, so the one loader (`weights.rs`) checks names, shapes and values. Native only.

use std::path::Path;

use pytorch_reader::{DType, PytorchReader};
use safetensors::Dtype;

use crate::error::{Error, Result};
use crate::weights::Raw;

/// The tensors of a `torch.save`d state dict, serialized as safetensors.
pub fn to_safetensors(path: &Path) -> Result<Vec<u8>> {
    let file = path.display();
    let reader = PytorchReader::new(path).map_err(|e| {
        Error::io(&file, format!("not a PyTorch weights file (torch.save) that can be read: {e}"))
    })?;
    let mut raws: Vec<(String, Raw)> = Vec::with_capacity(reader.len());
    for (name, t) in reader.tensors() {
        // pytorch-reader gives row-major bytes in the host's byte order: little-endian on every
        // target this crate builds for, as safetensors stores them.
        let bytes = t.read().map_err(|e| Error::io(&file, e))?;
        raws.push((name.clone(), Raw { dtype: dtype(t.dtype()), shape: t.shape().to_vec(), bytes }));
    }
    if raws.is_empty() {
        return Err(Error::io(&file, "holds no tensors (expected a UNet2DModel state dict)"));
    }
    safetensors::serialize(raws.iter().map(|(k, r)| (k.as_str(), r)), None)
        .map_err(|e| Error::Safetensors { file: file.to_string(), message: e.to_string() })
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
