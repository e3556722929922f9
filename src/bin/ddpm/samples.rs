//! `ddpm eval --samples DIR`: each batch of generated digits is kept as a PNG grid, so a long
//! evaluation (DDPM-1000 at n = 2000 takes hours on a CPU) can stop and resume where it was, and
//! the samples can be looked at. `run.json` names the model (SHA-256 of its files) and the
//! sampling; a folder of another run is refused, never mixed in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ddpm_web::images::{grid, grid_cols, unit};
use ddpm_web::native::files::{layout, weights_path};
use ddpm_web::{Error, Result};

/// What makes two runs' samples interchangeable.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
pub struct Run {
    pub config_sha256: String,
    pub weights_sha256: String,
    pub sampler: String,
    pub eta: f64,
    pub seed: u64,
    pub batch: usize,
}

fn sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

impl Run {
    pub fn new(model: &Path, sampler: String, eta: f64, seed: u64, batch: usize) -> Result<Self> {
        let layout = layout(model)?;
        Ok(Run {
            config_sha256: sha256(&model.join(layout.config()))?,
            weights_sha256: sha256(&weights_path(model, layout))?,
            sampler,
            eta,
            seed,
            batch,
        })
    }
}

pub struct SampleStore {
    dir: PathBuf,
}

const RUN: &str = "run.json";

impl SampleStore {
    /// Opens (or starts) `dir` for `run`; an existing folder must hold the same run.
    pub fn open(dir: &Path, run: &Run) -> Result<Self> {
        let path = dir.join(RUN);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
            let saved: Run = serde_json::from_str(&text).map_err(|e| Error::io(path.display(), e))?;
            if saved != *run {
                return Err(Error::Request(format!(
                    "{} holds the samples of another run ({saved:?}), not of this one ({run:?}): give another --samples folder",
                    dir.display()
                )));
            }
        } else {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
            let json = serde_json::to_string_pretty(run).expect("run serializes") + "\n";
            std::fs::write(&path, json).map_err(|e| Error::io(path.display(), e))?;
        }
        Ok(SampleStore { dir: dir.to_path_buf() })
    }

    fn path(&self, k: usize) -> PathBuf {
        self.dir.join(format!("{k:04}.png"))
    }

    /// Batch `k` of `n` 1x32x32 digits in [-1, 1], if it was kept.
    pub fn get(&self, k: usize, n: usize) -> Result<Option<Vec<f32>>> {
        let path = self.path(k);
        if !path.exists() {
            return Ok(None);
        }
        let img = image::open(&path).map_err(|e| Error::io(path.display(), e))?.into_luma8();
        let (cols, s) = (grid_cols(n), 32);
        let want = (cols as u32 * s, n.div_ceil(cols) as u32 * s);
        if img.dimensions() != want {
            return Err(Error::io(
                path.display(),
                format!(
                    "a grid of {n} digits is {}x{} pixels, this is {}x{}",
                    want.0,
                    want.1,
                    img.width(),
                    img.height()
                ),
            ));
        }
        let mut out = Vec::with_capacity(n * 1024);
        for i in 0..n {
            let (x0, y0) = ((i % cols) as u32 * s, (i / cols) as u32 * s);
            for y in 0..s {
                out.extend((0..s).map(|x| unit(img.get_pixel(x0 + x, y0 + y)[0] as f32)));
            }
        }
        Ok(Some(out))
    }

    /// Keeps batch `k` ([n, 1, 32, 32] in [-1, 1]); written whole, then renamed into place.
    pub fn put(&self, k: usize, batch: &[f32], n: usize) -> Result<()> {
        let p = grid(batch, [n, 1, 32, 32], 0);
        let (tmp, path) = (self.dir.join(format!("{k:04}.partial.png")), self.path(k));
        image::save_buffer(&tmp, &p.data, p.width as u32, p.height as u32, image::ExtendedColorType::L8)
            .map_err(|e| Error::io(tmp.display(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(path.display(), e))
    }
}
