//! Image grids as PNG (torchvision's `make_grid` layout).
use std::path::Path;

/// Layout of an image grid.
#[derive(Clone, Copy, Debug)]
pub struct GridStyle {
    /// Images per row.
    pub per_row: usize,
    /// Pixels of padding between and around images (before upscaling), like `make_grid`'s 2.
    pub padding: usize,
    /// Grey level of the padding (the tutorial uses 128 for integer images).
    pub pad_value: u8,
    /// Integer upscaling factor, so that 28×28 digits are visible.
    pub scale: usize,
}

impl Default for GridStyle {
    fn default() -> Self {
        Self {
            per_row: 8,
            padding: 2,
            pad_value: 128,
            scale: 4,
        }
    }
}

/// Lays out `n` greyscale images of `h`×`w` (values 0..=255, row-major, image after image) as
/// one greyscale picture; returns (width, height, pixels).
pub fn grid(images: &[u8], n: usize, h: usize, w: usize, style: GridStyle) -> (u32, u32, Vec<u8>) {
    assert_eq!(
        images.len(),
        n * h * w,
        "grid: expected {n} images of {h}x{w}"
    );
    let cols = style.per_row.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let p = style.padding;
    let (gw, gh) = (cols * (w + p) + p, rows * (h + p) + p);
    let mut canvas = vec![style.pad_value; gw * gh];
    for i in 0..n {
        let (r, c) = (i / cols, i % cols);
        let (y0, x0) = (p + r * (h + p), p + c * (w + p));
        for y in 0..h {
            let src = &images[(i * h + y) * w..(i * h + y + 1) * w];
            canvas[(y0 + y) * gw + x0..(y0 + y) * gw + x0 + w].copy_from_slice(src);
        }
    }
    let s = style.scale.max(1);
    let (sw, sh) = (gw * s, gh * s);
    let mut out = vec![0u8; sw * sh];
    for y in 0..sh {
        for x in 0..sw {
            out[y * sw + x] = canvas[(y / s) * gw + x / s];
        }
    }
    (sw as u32, sh as u32, out)
}

/// Writes images as a PNG grid (see [`grid`]).
pub fn save_grid(
    path: &Path,
    images: &[u8],
    n: usize,
    h: usize,
    w: usize,
    style: GridStyle,
) -> std::io::Result<()> {
    let (gw, gh, pixels) = grid(images, n, h, w, style);
    // Encode in memory, then write atomically: a run killed while writing its samples leaves
    // the previous picture, never half a PNG.
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, gw, gh);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&pixels))
        .map_err(std::io::Error::other)?;
    crate::atomic_file::write_atomic(path, &bytes)
}

/// Converts pixel values of a float tensor (integers 0..=255 after dequantization's inverse) to
/// bytes, clamping.
pub fn to_bytes<E: num_traits::Float>(values: &[E]) -> Vec<u8> {
    values
        .iter()
        .map(|v| v.to_f64().unwrap_or(0.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_images_with_padding() {
        let images: Vec<u8> = (0..3).flat_map(|i| vec![10 * (i + 1) as u8; 4]).collect();
        let style = GridStyle {
            per_row: 2,
            padding: 1,
            pad_value: 128,
            scale: 1,
        };
        let (w, h, px) = grid(&images, 3, 2, 2, style);
        assert_eq!((w, h), (7, 7));
        assert_eq!(px[0], 128);
        assert_eq!(px[7 + 1], 10);
        assert_eq!(px[7 + 4], 20);
        assert_eq!(px[4 * 7 + 1], 30);
        assert_eq!(px[4 * 7 + 4], 128, "empty cell stays padding");
        let (w2, h2, _) = grid(&images, 3, 2, 2, GridStyle { scale: 3, ..style });
        assert_eq!((w2, h2), (21, 21));
    }
}
