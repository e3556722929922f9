//! Model folders on disk (native only): read either layout, write the flat one.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::model::{CONFIG, Layout, MODEL_INDEX, Model, ModelSource, SCHEDULER_CONFIG, WEIGHTS};
use crate::pickle;
use crate::weights::{self, SaveDtype};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path.display(), e))
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read(path)?).map_err(|e| Error::io(path.display(), format!("not UTF-8 text: {e}")))
}

/// Which layout a folder holds.
pub fn layout(dir: &Path) -> Result<Layout> {
    if dir.join(CONFIG).is_file() {
        Ok(Layout::Flat)
    } else if dir.join(MODEL_INDEX).is_file() || dir.join(Layout::Pipeline.config()).is_file() {
        Ok(Layout::Pipeline)
    } else if !dir.is_dir() {
        Err(Error::io(dir.display(), "no such folder"))
    } else {
        Err(Error::io(
            dir.display(),
            format!(
                "not a diffusers model folder: no {CONFIG} (flat layout) and no {MODEL_INDEX} with unet/ (pipeline layout)"
            ),
        ))
    }
}

pub fn load_model(dir: &Path, device: &Device) -> Result<Model> {
    let layout = layout(dir)?;
    let paths = [dir.join(layout.config()), dir.join(layout.scheduler()), weights_path(dir, layout)];
    let config = read_text(&paths[0])?;
    let scheduler = if paths[1].is_file() { Some(read_text(&paths[1])?) } else { None };
    let bytes = match paths[2].extension() {
        Some(ext) if ext == "bin" => {
            pickle::to_safetensors(&paths[2].display().to_string(), read(&paths[2])?)?
        }
        _ => read(&paths[2])?,
    };
    let names = paths.map(|p| p.display().to_string());
    Model::load(
        ModelSource {
            config: (&names[0], &config),
            scheduler: scheduler.as_deref().map(|s| (names[1].as_str(), s)),
            weights: (&names[2], &bytes),
        },
        device,
    )
}

/// A folder's weights file: the safetensors, or where there is only diffusers' older
/// `diffusion_pytorch_model.bin`, that (read through `pickle.rs`).
pub fn weights_path(dir: &Path, layout: Layout) -> PathBuf {
    let safetensors = dir.join(layout.weights());
    let bin = safetensors.with_extension("bin");
    if safetensors.is_file() || !bin.is_file() { safetensors } else { bin }
}

/// Writes `path` whole or not at all: the bytes go to `path.partial`, which then replaces `path`
/// (one rename), so a crash mid-write never leaves a truncated file where a good one was.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, data).map_err(|e| Error::io(Path::new(&partial).display(), e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path.display(), e))
}

/// Writes `config.json`, `scheduler_config.json` and the safetensors, as diffusers'
/// `save_pretrained` does for a UNet2DModel plus its scheduler; each file whole or not at all.
pub fn save_model(model: &Model, dir: &Path, dtype: SaveDtype) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let bytes = weights::to_safetensors(&weights::to_host(&model.unet)?, dtype)?;
    write_atomic(&dir.join(CONFIG), model.unet.config.to_json().as_bytes())?;
    write_atomic(&dir.join(SCHEDULER_CONFIG), model.scheduler.config.to_json().as_bytes())?;
    write_atomic(&dir.join(WEIGHTS), &bytes)
}
