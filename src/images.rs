//! Model outputs in [-1, 1] to 8-bit pixels, a batch laid out as a grid, and RGBA pixels back
//! to model inputs. Pure data layout: the CLI writes PNGs from it, the browser fills canvases.

use crate::error::{Error, Result};

/// An 8-bit image, gray (1 channel) or RGB (3), row-major, channels interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// Channels an image of `c` channels is shown with: RGB from the first 3, else gray.
fn shown_channels(c: usize) -> usize {
    if c >= 3 { 3 } else { 1 }
}

/// Image `i` of a [N, C, H, W] batch as pixels: (x / 2 + 0.5) clamped to [0, 1], times 255,
/// rounded, as diffusers' pipelines do. More than 3 channels keeps the first 3.
pub fn to_pixels(batch: &[f32], [n, c, h, w]: [usize; 4], i: usize) -> Pixels {
    assert!(i < n && batch.len() == n * c * h * w, "image {i} of a batch of shape {:?}", [n, c, h, w]);
    let channels = shown_channels(c);
    let img = &batch[i * c * h * w..(i + 1) * c * h * w];
    let mut data = Vec::with_capacity(h * w * channels);
    for p in 0..h * w {
        for ch in 0..channels {
            let x = img[ch * h * w + p];
            data.push(((x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    Pixels { width: w, height: h, channels, data }
}

/// Columns of the grid of `n` images: ceil(sqrt(n)).
pub fn grid_cols(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

/// The whole batch in a grid of `grid_cols(n)` columns with a `gap`-pixel white border.
pub fn grid(batch: &[f32], shape: [usize; 4], gap: usize) -> Pixels {
    grid_of(batch, shape, grid_cols(shape[0]), gap)
}

/// The whole batch, row by row, in `cols` columns with a `gap`-pixel white border.
pub fn grid_of(batch: &[f32], shape: [usize; 4], cols: usize, gap: usize) -> Pixels {
    let n = shape[0];
    let cols = cols.max(1);
    let rows = n.div_ceil(cols);
    let (w, h) = (shape[3], shape[2]);
    let ch = shown_channels(shape[1]);
    let width = cols * (w + gap) + gap;
    let height = rows * (h + gap) + gap;
    let mut data = vec![255u8; width * height * ch];
    for i in 0..n {
        let img = to_pixels(batch, shape, i);
        let (x0, y0) = (gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap));
        for y in 0..h {
            let dst = ((y0 + y) * width + x0) * ch;
            data[dst..dst + w * ch].copy_from_slice(&img.data[y * w * ch..(y + 1) * w * ch]);
        }
    }
    Pixels { width, height, channels: ch, data }
}

/// An 8-bit level (0-255, possibly fractional) back to the model's [-1, 1].
pub fn unit(v: f32) -> f32 {
    v / 127.5 - 1.0
}

/// `n` RGBA images of H x W (as a canvas gives them) as a [N, C, H, W] batch in [-1, 1]:
/// gray by ITU-R 601 luma (as PIL's `convert("L")`) for C = 1, RGB for C = 3; alpha is ignored.
pub fn from_rgba(rgba: &[u8], n: usize, [c, h, w]: [usize; 3]) -> Result<Vec<f32>> {
    if rgba.len() != n * h * w * 4 {
        return Err(Error::Request(format!(
            "{n} RGBA images of {h}x{w} need {} bytes, got {}",
            n * h * w * 4,
            rgba.len()
        )));
    }
    if c != 1 && c != 3 {
        return Err(Error::Request(format!(
            "images can be turned into 1 or 3 channels, the model takes {c}"
        )));
    }
    let mut out = Vec::with_capacity(n * c * h * w);
    for img in rgba.chunks_exact(h * w * 4) {
        if c == 1 {
            out.extend(
                img.chunks_exact(4)
                    .map(|p| unit(0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)),
            );
        } else {
            for ch in 0..3 {
                out.extend(img.chunks_exact(4).map(|p| unit(p[ch] as f32)));
            }
        }
    }
    Ok(out)
}
