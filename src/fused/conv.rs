//! A plain 2-D convolution (one group, no dilation, no bias) on the CPU backend as matrix
//! products over groups of images, forward and both backward passes.
//!
//! Why: a ResNet tower on small pictures convolves tiny maps with few channels, where the CPU
//! backend's general convolution loses most of its time outside the products (the weight
//! gradient runs as a convolution whose kernel is the whole output map, the input gradient as a
//! transposed convolution). Here every pass is one unfolding (`im2col`) and one product per
//! group of images:
//!
//! ```text
//! col = unfold(x)                 [c_in·kh·kw, images·pixels]
//! y   = W · col                   W as [c_out, c_in·kh·kw]
//! ∂W  = Σ_groups g · colᵀ         g as [c_out, images·pixels]
//! ∂x  = fold(Wᵀ · g)              fold adds each column back onto the pixels it came from
//! ```
//!
//! Images are grouped so that a product has at least [`GROUP_COLUMNS`] columns (a 2×2 map alone
//! would give four), and groups run in parallel; the weight gradient is summed over fixed runs of
//! consecutive groups and those sums added in order, so it is the same to the last bit on every
//! run.

use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;

use super::dense;
use super::product::{Strided, product};

/// A product should have at least this many columns for the multiplication kernel to run at
/// speed; smaller maps are grouped across images to reach it.
const GROUP_COLUMNS: usize = 256;

/// How many partial weight gradients the backward pass sums at most: enough for every thread of a
/// desktop processor to hold one, fixed so that the order of the sum never depends on the machine.
const WEIGHT_GRAD_PARTIALS: usize = 16;

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConvShape {
    batch: usize,
    c_in: usize,
    height: usize,
    width: usize,
    c_out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    /// Padding before the first row and column.
    pad: [usize; 2],
    out: [usize; 2],
}

impl ConvShape {
    /// The convolution of `x` `[n, c_in, h, w]` by `weight` `[c_out, c_in, kh, kw]`, or `None`
    /// when it is not plain (groups, dilation), has an empty axis other than the batch, or has
    /// no output.
    pub(super) fn plain(
        x: [usize; 4],
        weight: [usize; 4],
        options: &ConvOptions<2>,
    ) -> Option<Self> {
        let [batch, c_in, height, width] = x;
        let [c_out, weight_in, kh, kw] = weight;
        let empty = [c_in, height, width, c_out, kh, kw].contains(&0);
        if empty || options.groups != 1 || options.dilation != [1, 1] || weight_in != c_in {
            return None;
        }
        let out = |axis: usize, size: usize, kernel: usize| {
            let (begin, end) = options.padding[axis];
            let padded = size + begin + end;
            (padded >= kernel).then(|| (padded - kernel) / options.stride[axis] + 1)
        };
        let out = [out(0, height, kh)?, out(1, width, kw)?];
        Some(Self {
            batch,
            c_in,
            height,
            width,
            c_out,
            kernel: [kh, kw],
            stride: options.stride,
            pad: options.padding_begin(),
            out,
        })
    }

    /// The output's shape `[n, c_out, oh, ow]`.
    pub(super) fn output(&self) -> [usize; 4] {
        [self.batch, self.c_out, self.out[0], self.out[1]]
    }

    /// Rows of the unfolded input: `c_in·kh·kw`.
    fn depth(&self) -> usize {
        self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels of one image.
    fn pixels(&self) -> usize {
        self.out[0] * self.out[1]
    }

    fn image_len(&self) -> usize {
        self.c_in * self.height * self.width
    }

    fn output_len(&self) -> usize {
        self.c_out * self.pixels()
    }

    /// Images per product.
    fn group(&self) -> usize {
        GROUP_COLUMNS
            .div_ceil(self.pixels().max(1))
            .clamp(1, self.batch.max(1))
    }

    /// Whether the unfolded input is the input itself (a 1×1 convolution with stride 1 and no
    /// padding).
    fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// Calls `f(row, output row, input row or None where it falls in the padding, columns)` for
    /// every row of the unfolded image, where `row` indexes the unfolded row `c·kh·kw + i·kw + j`,
    /// the output row is `oy`, and `columns` is [`ConvShape::valid_columns`] of `j`.
    fn for_each_line(
        &self,
        mut f: impl FnMut(usize, usize, Option<usize>, &(std::ops::Range<usize>, usize)),
    ) {
        let [kh, kw] = self.kernel;
        let columns: Vec<_> = (0..kw).map(|j| self.valid_columns(j)).collect();
        for c in 0..self.c_in {
            for i in 0..kh {
                for (j, columns) in columns.iter().enumerate() {
                    let row = (c * kh + i) * kw + j;
                    for oy in 0..self.out[0] {
                        let iy = (oy * self.stride[0] + i).checked_sub(self.pad[0]);
                        let line = iy
                            .filter(|&iy| iy < self.height)
                            .map(|iy| c * self.height + iy);
                        f(row, oy, line, columns);
                    }
                }
            }
        }
    }

    /// The output columns `ox` whose input column `ox·stride + j − pad` lies inside the image,
    /// as a range, and that input column for the first of them (meaningless when the range is
    /// empty).
    fn valid_columns(&self, j: usize) -> (std::ops::Range<usize>, usize) {
        let (s, pad, ow) = (self.stride[1], self.pad[1], self.out[1]);
        let first = pad.saturating_sub(j).div_ceil(s);
        // Last ox with ox·s + j − pad ≤ width − 1.
        let end = if self.width + pad > j {
            ((self.width + pad - j - 1) / s + 1).min(ow)
        } else {
            0
        };
        let first = first.min(end);
        (first..end, (first * s + j).saturating_sub(pad))
    }

    /// Writes image `x` unfolded into the columns `[offset, offset + pixels)` of `col`, whose rows
    /// are `row_len` long.
    fn unfold(&self, x: &[f32], col: &mut [f32], row_len: usize, offset: usize) {
        let (ow, s) = (self.out[1], self.stride[1]);
        self.for_each_line(|row, oy, line, (valid, first)| {
            let start = row * row_len + offset + oy * ow;
            let out = &mut col[start..start + ow];
            let Some(line) = line else {
                out.fill(0.0);
                return;
            };
            let (valid, first) = (valid.clone(), *first);
            let input = &x[line * self.width..(line + 1) * self.width];
            if valid.is_empty() {
                out.fill(0.0);
                return;
            }
            out[..valid.start].fill(0.0);
            out[valid.end..].fill(0.0);
            let out = &mut out[valid];
            if s == 1 {
                out.copy_from_slice(&input[first..first + out.len()]);
            } else {
                for (k, value) in out.iter_mut().enumerate() {
                    *value = input[first + k * s];
                }
            }
        });
    }

    /// Adds the columns `[offset, offset + pixels)` of `col` back onto the pixels of image `x`
    /// they were unfolded from (the adjoint of [`ConvShape::unfold`]).
    fn fold(&self, col: &[f32], row_len: usize, offset: usize, x: &mut [f32]) {
        let (ow, s) = (self.out[1], self.stride[1]);
        self.for_each_line(|row, oy, line, (valid, first)| {
            let Some(line) = line else { return };
            let start = row * row_len + offset + oy * ow;
            let first = *first;
            if valid.is_empty() {
                return;
            }
            let values = &col[start + valid.start..start + valid.end];
            let input = &mut x[line * self.width..(line + 1) * self.width];
            if s == 1 {
                for (target, value) in input[first..first + values.len()].iter_mut().zip(values) {
                    *target += value;
                }
            } else {
                for (k, value) in values.iter().enumerate() {
                    input[first + k * s] += value;
                }
            }
        });
    }

    /// Where channel `channel` of image `index` starts in a `[c_out, images·pixels]` matrix with
    /// rows `row_len` long.
    fn block(&self, channel: usize, index: usize, row_len: usize) -> usize {
        channel * row_len + index * self.pixels()
    }

    /// Copies the `[c_out, pixels]` maps of consecutive images into the column blocks of one
    /// `[c_out, images·pixels]` matrix.
    fn gather(&self, images: &[f32], matrix: &mut [f32]) {
        let (pixels, row_len) = (self.pixels(), matrix.len() / self.c_out.max(1));
        for (index, image) in images.chunks(self.output_len()).enumerate() {
            for (channel, map) in image.chunks(pixels).enumerate() {
                let start = self.block(channel, index, row_len);
                matrix[start..start + pixels].copy_from_slice(map);
            }
        }
    }

    /// The inverse of [`ConvShape::gather`].
    fn scatter(&self, matrix: &[f32], images: &mut [f32]) {
        let (pixels, row_len) = (self.pixels(), matrix.len() / self.c_out.max(1));
        for (index, image) in images.chunks_mut(self.output_len()).enumerate() {
            for (channel, map) in image.chunks_mut(pixels).enumerate() {
                let start = self.block(channel, index, row_len);
                map.copy_from_slice(&matrix[start..start + pixels]);
            }
        }
    }
}

/// `y = conv(x, weight)`, `[n, c_out, oh, ow]` in row-major order.
pub(super) fn forward(x: &[f32], weight: &[f32], shape: &ConvShape) -> Vec<f32> {
    let (depth, pixels, group) = (shape.depth(), shape.pixels(), shape.group());
    let mut out = vec![0.0f32; shape.batch * shape.output_len()];
    let weight = Strided::rows(weight, depth);
    out.par_chunks_mut(group * shape.output_len())
        .zip(x.par_chunks(group * shape.image_len()))
        .for_each_init(Vec::new, |scratch, (out, x)| {
            let images = out.len() / shape.output_len();
            let columns = images * pixels;
            let multiply = |out: &mut [f32], col| {
                product(
                    [shape.c_out, columns, depth],
                    out,
                    weight,
                    col,
                    false,
                    false,
                );
            };
            if images == 1 && shape.pointwise() {
                return multiply(out, Strided::rows(x, columns));
            }
            let (col, result) = scratch_pair(scratch, depth * columns, shape.c_out * columns);
            for (index, image) in x.chunks(shape.image_len()).enumerate() {
                shape.unfold(image, col, columns, index * pixels);
            }
            let col = Strided::rows(col, columns);
            if images == 1 {
                return multiply(out, col);
            }
            multiply(result, col);
            shape.scatter(result, out);
        });
    out
}

/// The gradients of `x` and of `weight` given the output gradient `grad`.
pub(super) fn backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    shape: &ConvShape,
) -> (Vec<f32>, Vec<f32>) {
    let (depth, pixels, group) = (shape.depth(), shape.pixels(), shape.group());
    let mut x_grad = vec![0.0f32; shape.batch * shape.image_len()];
    // Wᵀ: element (row r, channel o) of the transpose is W[o, r].
    let weight_t = Strided {
        values: weight,
        row_stride: 1,
        column_stride: depth as isize,
    };
    // Each partial sum covers a fixed run of consecutive groups and the partials are added in
    // order, so the weight gradient does not depend on how the thread pool splits the work: a
    // seeded run gives the same bits every time, whatever the number of threads.
    let groups = shape.batch.max(1).div_ceil(group);
    let partials: Vec<Vec<f32>> = x_grad
        .par_chunks_mut(group * shape.image_len())
        .zip(x.par_chunks(group * shape.image_len()))
        .zip(grad.par_chunks(group * shape.output_len()))
        .fold_chunks(
            groups.div_ceil(WEIGHT_GRAD_PARTIALS),
            || (vec![0.0f32; shape.c_out * depth], Vec::new()),
            |(mut weight_grad, mut scratch), ((x_grad, x), grad)| {
                let images = x.len() / shape.image_len();
                let columns = images * pixels;
                let (col, grads) =
                    scratch_pair(&mut scratch, depth * columns, shape.c_out * columns);
                let grads: &[f32] = if images == 1 {
                    grad
                } else {
                    shape.gather(grad, grads);
                    grads
                };
                let grads = Strided::rows(grads, columns);
                // A lone pointwise image is its own unfolded input.
                let direct = images == 1 && shape.pointwise();
                if !direct {
                    for (index, image) in x.chunks(shape.image_len()).enumerate() {
                        shape.unfold(image, col, columns, index * pixels);
                    }
                }
                let unfolded = Strided::transposed(if direct { x } else { col }, columns);
                product(
                    [shape.c_out, depth, columns],
                    &mut weight_grad,
                    grads,
                    unfolded,
                    true,
                    false,
                );
                if direct {
                    product(
                        [depth, columns, shape.c_out],
                        x_grad,
                        weight_t,
                        grads,
                        false,
                        false,
                    );
                } else {
                    product(
                        [depth, columns, shape.c_out],
                        col,
                        weight_t,
                        grads,
                        false,
                        false,
                    );
                    for (index, image) in x_grad.chunks_mut(shape.image_len()).enumerate() {
                        shape.fold(col, columns, index * pixels, image);
                    }
                }
                (weight_grad, scratch)
            },
        )
        .map(|(weight_grad, _)| weight_grad)
        .collect();
    let mut partials = partials.into_iter();
    let mut weight_grad = partials
        .next()
        .unwrap_or_else(|| vec![0.0; shape.c_out * depth]);
    for part in partials {
        dense::add(&mut weight_grad, &part);
    }
    (x_grad, weight_grad)
}

/// Two scratch matrices of the given lengths carved from one reused buffer.
fn scratch_pair(scratch: &mut Vec<f32>, first: usize, second: usize) -> (&mut [f32], &mut [f32]) {
    if scratch.len() < first + second {
        scratch.resize(first + second, 0.0);
    }
    let (a, rest) = scratch.split_at_mut(first);
    (a, &mut rest[..second])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight gradient sums many groups of images; the order of that sum must not follow
    /// the thread pool, or a seeded training run would not give the same bits twice.
    #[test]
    fn the_weight_gradient_is_the_same_whatever_the_threads() {
        // 8×8 maps: four images a group, 64 groups, more than there are partial sums.
        let (x_shape, w_shape) = ([256, 3, 8, 8], [4, 3, 3, 3]);
        let shape = ConvShape::plain(
            x_shape,
            w_shape,
            &ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        )
        .unwrap();
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i + seed) * 7919) % 1013) as f32 / 311.0 - 1.6)
                .collect()
        };
        let x = values(x_shape.iter().product(), 0);
        let weight = values(w_shape.iter().product(), 5);
        let grad = values(shape.output().iter().product(), 11);
        let weight_grad = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| backward(&x, &weight, &grad, &shape).1)
        };
        let reference = weight_grad(1);
        for threads in [2, 3, 7] {
            for _ in 0..3 {
                let differing = weight_grad(threads)
                    .iter()
                    .zip(&reference)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(
                    differing,
                    0,
                    "{threads} threads: {differing} of {} values differ from one thread's",
                    reference.len()
                );
            }
        }
    }
}
