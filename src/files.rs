//! Model folders on disk (native only): read either layout, write the flat one.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::error::{Error, Result};
use crate::model::{CONFIG, Layout, MODEL_INDEX, Model, ModelSource, SCHEDULER_CONFIG, WEIGHTS};
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
            format!("not a diffusers model folder: no {CONFIG} (flat layout) and no {MODEL_INDEX} with unet/ (pipeline layout)"),
        ))
    }
}

pub fn load_model(dir: &Path, device: &Device) -> Result<Model> {
    let layout = layout(dir)?;
    let paths: [PathBuf; 3] = [layout.config(), layout.scheduler(), layout.weights()].map(|p| dir.join(p));
    let config = read_text(&paths[0])?;
    let scheduler = if paths[1].is_file() { Some(read_text(&paths[1])?) } else { None };
    let bytes = read(&paths[2])?;
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

/// Writes `config.json`, `scheduler_config.json` and the safetensors, as diffusers'
/// `save_pretrained` does for a UNet2DModel plus its scheduler.
pub fn save_model(model: &Model, dir: &Path, dtype: SaveDtype) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let bytes = weights::to_safetensors(&weights::to_host(&model.unet)?, dtype)?;
    let write = |name: &str, data: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(|e| Error::io(path.display(), e))
    };
    write(CONFIG, model.unet.config.to_json().as_bytes())?;
    write(SCHEDULER_CONFIG, model.scheduler.config.to_json().as_bytes())?;
    write(WEIGHTS, &bytes)
}
