//! Four 16x16 RGBA "drawings" for the fine-tuning tests (native and in the browser).

/// White vertical bars on black at four different places.
pub fn drawings() -> Vec<u8> {
    let mut rgba = vec![0u8; 4 * 256 * 4];
    for i in 0..4 {
        for y in 0..16 {
            for x in 4 * i..4 * i + 3 {
                let p = (i * 256 + y * 16 + x) * 4;
                rgba[p..p + 4].copy_from_slice(&[255, 255, 255, 255]);
            }
        }
    }
    rgba
}
