//! The CPU backend's kernels for the fused operations: every loop split over rayon's threads
//! and written so the compiler vectorises it ([`super::kernels`]).

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, Flex, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, Shape};
use rayon::prelude::*;

use super::attention::{self, AttentionShape};
use super::conv::{self, ConvShape};
use super::dense;
use super::{AttentionSetting, FusedOps, QUICK_GELU_SLOPE, composed, kernels};

impl FusedOps for Flex {
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return composed::quick_gelu::<Self>(x);
        }
        map_f32(x, |x| x * sigmoid(QUICK_GELU_SLOPE * x))
    }

    fn quick_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return composed::quick_gelu_backward::<Self>(x, grad);
        }
        zip_f32(grad, x, |g, x| {
            let s = sigmoid(QUICK_GELU_SLOPE * x);
            g * (s + QUICK_GELU_SLOPE * x * s * (1.0 - s))
        })
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return composed::softmax_last::<Self>(x);
        }
        rows_f32(x, None, |row, _| kernels::softmax_row(row))
    }

    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if y.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return composed::softmax_last_backward::<Self>(y, grad);
        }
        rows_f32(grad, Some(y), |g, y| {
            kernels::softmax_backward_row(g, y.expect("softmax output"))
        })
    }

    fn batch_norm_batch_stats(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if [&x, &gamma, &beta].iter().any(|t| t.dtype() != DType::F32) {
            return composed::batch_norm_batch_stats::<Self>(x, gamma, beta, eps);
        }
        let shape = x.shape();
        let blocks = Blocks::of(&shape);
        let x = contiguous_f32(&x);
        let values = &x.storage::<f32>()[..blocks.len()];
        let (mean, var) = blocks.moments(values);
        let (gamma, beta) = (vector_f32(&gamma), vector_f32(&beta));
        let inverse_std = inverse_std(&var, eps);
        let mut out = vec![0.0f32; blocks.len()];
        blocks.for_each_mut(&mut out, |channel, out, start| {
            let scale = gamma[channel] * inverse_std[channel];
            let shift = beta[channel] - mean[channel] * scale;
            kernels::affine(out, &values[start..start + out.len()], scale, shift);
        });
        (
            f32_tensor(out, shape),
            f32_tensor(mean, Shape::new([blocks.channels])),
            f32_tensor(var, Shape::new([blocks.channels])),
        )
    }

    fn batch_norm_batch_stats_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if [&x, &gamma, &mean, &var, &grad]
            .iter()
            .any(|t| t.dtype() != DType::F32)
        {
            return composed::batch_norm_batch_stats_backward::<Self>(
                x, gamma, mean, var, grad, eps,
            );
        }
        let shape = x.shape();
        let blocks = Blocks::of(&shape);
        let x = contiguous_f32(&x);
        let values = &x.storage::<f32>()[..blocks.len()];
        let (gamma, mean) = (vector_f32(&gamma), vector_f32(&mean));
        let inverse_std = inverse_std(&vector_f32(&var), eps);
        let mut grad = owned_f32(grad);
        let grads = &mut grad.storage_mut::<f32>()[..blocks.len()];
        let sums: Vec<(f32, f32)> = blocks.per_channel(|channel, slices| {
            let (mut total, mut weighted) = (0.0f64, 0.0f64);
            for start in slices {
                let range = start..start + blocks.pixels;
                let (g, w) = kernels::gradient_sums(
                    &grads[range.clone()],
                    &values[range],
                    mean[channel],
                    inverse_std[channel],
                );
                total += f64::from(g);
                weighted += f64::from(w);
            }
            (total as f32, weighted as f32)
        });
        let count = blocks.count as f32;
        blocks.for_each_mut(grads, |channel, grad, start| {
            let (total, weighted) = sums[channel];
            kernels::batch_norm_input_grad(
                grad,
                &values[start..start + grad.len()],
                mean[channel],
                inverse_std[channel],
                gamma[channel] * inverse_std[channel],
                total / count,
                weighted / count,
            );
        });
        let channels = [blocks.channels];
        let (totals, weighted): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        (
            grad,
            f32_tensor(weighted, Shape::new(channels)),
            f32_tensor(totals, Shape::new(channels)),
        )
    }

    fn avg_pool_blocks(x: FloatTensor<Self>, size: usize) -> FloatTensor<Self> {
        let Some(pool) = Pool::of(&x, size) else {
            return composed::avg_pool_blocks::<Self>(x, size);
        };
        let x = contiguous_f32(&x);
        let mut out = vec![0.0f32; pool.planes() * pool.out_len()];
        let (out_len, plane_len) = (pool.out_len(), pool.plane_len());
        pool.per_plane(&mut out, out_len, elements(&x), plane_len, |out, plane| {
            pool.mean(plane, out)
        });
        f32_tensor(out, Shape::new(pool.output()))
    }

    fn avg_pool_blocks_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        size: usize,
    ) -> FloatTensor<Self> {
        let Some(pool) = Pool::of(&x, size).filter(|_| grad.dtype() == DType::F32) else {
            return composed::avg_pool_blocks_backward::<Self>(x, grad, size);
        };
        let grad = contiguous_f32(&grad);
        let mut x_grad = vec![0.0f32; pool.planes() * pool.plane_len()];
        let (out_len, plane_len) = (pool.out_len(), pool.plane_len());
        pool.per_plane(
            &mut x_grad,
            plane_len,
            elements(&grad),
            out_len,
            |plane, grad| pool.spread(grad, plane),
        );
        f32_tensor(x_grad, x.shape())
    }

    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let Some(shape) = linear_shape(&x, &weight, Some(&bias)) else {
            return composed::linear::<Self>(x, weight, bias);
        };
        let (x, weight) = (contiguous_f32(&x), contiguous_f32(&weight));
        let out = dense::linear_forward(elements(&x), elements(&weight), &vector_f32(&bias), shape);
        f32_tensor(out, Shape::new([shape.rows, shape.d_out]))
    }

    fn linear_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        wanted: [bool; 3],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let Some(shape) = linear_shape(&x, &weight, None).filter(|_| grad.dtype() == DType::F32)
        else {
            return composed::linear_backward::<Self>(x, weight, grad);
        };
        let (x, weight, grad) = (
            contiguous_f32(&x),
            contiguous_f32(&weight),
            contiguous_f32(&grad),
        );
        let [x_grad, weight_grad, bias_grad] = dense::linear_backward(
            elements(&x),
            elements(&weight),
            elements(&grad),
            shape,
            wanted,
        );
        (
            wanted_tensor(x_grad, x.shape()),
            wanted_tensor(weight_grad, weight.shape()),
            wanted_tensor(bias_grad, Shape::new([shape.d_out])),
        )
    }

    fn layer_norm_last_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
        // All three gradients come out of one pass over the rows, so all are computed.
        _wanted: [bool; 3],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let width = gamma.shape().num_elements();
        let fits = [&x, &gamma, &grad].iter().all(|t| t.dtype() == DType::F32)
            && width > 0
            && x.shape().num_dims() > 0
            && x.shape()[x.shape().num_dims() - 1] == width;
        if !fits {
            return composed::layer_norm_last_backward::<Self>(x, gamma, grad, eps);
        }
        let (x, grad) = (contiguous_f32(&x), contiguous_f32(&grad));
        let (x_grad, gamma_grad, beta_grad) = dense::layer_norm_backward(
            elements(&x),
            &vector_f32(&gamma),
            elements(&grad),
            eps as f32,
        );
        (
            f32_tensor(x_grad, x.shape()),
            f32_tensor(gamma_grad, Shape::new([width])),
            f32_tensor(beta_grad, Shape::new([width])),
        )
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        setting: AttentionSetting,
    ) -> FloatTensor<Self> {
        let Some(shape) = attention_shape(&q, &k, &v, None, setting) else {
            return composed::attention::<Self>(q, k, v, setting);
        };
        let [q, k, v] = [&q, &k, &v].map(contiguous_f32);
        let out = attention::attention_forward(elements(&q), elements(&k), elements(&v), shape);
        f32_tensor(out, q.shape())
    }

    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        setting: AttentionSetting,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let Some(shape) = attention_shape(&q, &k, &v, Some(&grad), setting) else {
            return composed::attention_backward::<Self>(q, k, v, grad, setting);
        };
        let [q, k, v, grad] = [&q, &k, &v, &grad].map(contiguous_f32);
        let [q_grad, k_grad, v_grad] = attention::attention_backward(
            elements(&q),
            elements(&k),
            elements(&v),
            elements(&grad),
            shape,
        );
        (
            f32_tensor(q_grad, q.shape()),
            f32_tensor(k_grad, k.shape()),
            f32_tensor(v_grad, v.shape()),
        )
    }

    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some(shape) = plain_conv(&x, &weight, &options) else {
            return composed::conv2d::<Self>(x, weight, options);
        };
        let (x, weight) = (contiguous_f32(&x), contiguous_f32(&weight));
        let out = conv::forward(elements(&x), elements(&weight), &shape);
        f32_tensor(out, Shape::new(shape.output()))
    }

    fn conv2d_plain_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let Some(shape) = plain_conv(&x, &weight, &options).filter(|_| grad.dtype() == DType::F32)
        else {
            return composed::conv2d_backward::<Self>(x, weight, grad, options);
        };
        let (x, weight, grad) = (
            contiguous_f32(&x),
            contiguous_f32(&weight),
            contiguous_f32(&grad),
        );
        let (x_grad, weight_grad) =
            conv::backward(elements(&x), elements(&weight), elements(&grad), &shape);
        (
            f32_tensor(x_grad, x.shape()),
            f32_tensor(weight_grad, weight.shape()),
        )
    }
}

/// Average pooling over non-overlapping `size × size` blocks of `[n, c, h, w]` maps.
struct Pool {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    size: usize,
    out: [usize; 2],
}

impl Pool {
    /// The pooling of `x` the CPU kernels handle: f32, at least one whole block.
    fn of(x: &FlexTensor, size: usize) -> Option<Self> {
        let shape = x.shape();
        let [batch, channels, height, width]: [usize; 4] = shape.as_slice().try_into().ok()?;
        let out = [height / size.max(1), width / size.max(1)];
        (x.dtype() == DType::F32 && size > 0 && out[0] * out[1] > 0).then_some(Self {
            batch,
            channels,
            height,
            width,
            size,
            out,
        })
    }

    fn output(&self) -> [usize; 4] {
        [self.batch, self.channels, self.out[0], self.out[1]]
    }

    fn planes(&self) -> usize {
        self.batch * self.channels
    }

    fn plane_len(&self) -> usize {
        self.height * self.width
    }

    fn out_len(&self) -> usize {
        self.out[0] * self.out[1]
    }

    /// Runs `f(target plane, source plane)` over the planes of `target` and `source`, planes
    /// `target_len` and `source_len` long, in parallel.
    fn per_plane(
        &self,
        target: &mut [f32],
        target_len: usize,
        source: &[f32],
        source_len: usize,
        f: impl Fn(&mut [f32], &[f32]) + Sync,
    ) {
        let per_task = (PARALLEL_MIN / target_len.max(source_len)).max(1);
        target
            .par_chunks_mut(target_len)
            .zip(source.par_chunks(source_len))
            .with_min_len(per_task)
            .for_each(|(target, source)| f(target, source));
    }

    /// Each block's mean of one plane.
    fn mean(&self, plane: &[f32], out: &mut [f32]) {
        let (k, ow) = (self.size, self.out[1]);
        let scale = 1.0 / (k * k) as f32;
        for (oy, out) in out.chunks_mut(ow).enumerate() {
            for dy in 0..k {
                let row = &plane[(oy * k + dy) * self.width..][..ow * k];
                for (value, block) in out.iter_mut().zip(row.chunks(k)) {
                    *value += block.iter().sum::<f32>();
                }
            }
            out.iter_mut().for_each(|v| *v *= scale);
        }
    }

    /// One plane's input gradient: each block's output gradient spread evenly over the block.
    fn spread(&self, grad: &[f32], plane: &mut [f32]) {
        let (k, ow) = (self.size, self.out[1]);
        let scale = 1.0 / (k * k) as f32;
        for y in 0..self.out[0] * k {
            let grad = &grad[(y / k) * ow..][..ow];
            let row = &mut plane[y * self.width..][..ow * k];
            for (block, g) in row.chunks_mut(k).zip(grad) {
                block.fill(g * scale);
            }
        }
    }
}

/// The sizes of a linear layer the CPU kernels handle: f32, `x` `[rows, in]`, `weight`
/// `[in, out]` and, when given, `bias` `[out]`.
fn linear_shape(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
) -> Option<dense::LinearShape> {
    let f32s = [Some(x), Some(weight), bias]
        .into_iter()
        .flatten()
        .all(|t| t.dtype() == DType::F32);
    let [rows, d_in]: [usize; 2] = x.shape().as_slice().try_into().ok()?;
    let [weight_in, d_out]: [usize; 2] = weight.shape().as_slice().try_into().ok()?;
    let bias_fits = bias.is_none_or(|b| b.shape().as_slice() == [d_out]);
    (f32s && weight_in == d_in && bias_fits).then_some(dense::LinearShape { rows, d_in, d_out })
}

/// The sizes of an attention call the CPU kernels handle: f32 queries `[batch, queries, width]`,
/// keys and values (and the output gradient, when given) of matching shapes, the width split
/// evenly into heads, and a causal mask only where there are as many queries as keys.
fn attention_shape(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    grad: Option<&FlexTensor>,
    setting: AttentionSetting,
) -> Option<AttentionShape> {
    let f32s = [Some(q), Some(k), Some(v), grad]
        .into_iter()
        .flatten()
        .all(|t| t.dtype() == DType::F32);
    let [batch, queries, width]: [usize; 3] = q.shape().as_slice().try_into().ok()?;
    let [k_batch, keys, k_width]: [usize; 3] = k.shape().as_slice().try_into().ok()?;
    let AttentionSetting { heads, causal } = setting;
    let fits = f32s
        && (k_batch, k_width) == (batch, width)
        && v.shape() == k.shape()
        && grad.is_none_or(|g| g.shape() == q.shape())
        && heads > 0
        && width % heads == 0
        && (!causal || queries == keys);
    fits.then_some(AttentionShape {
        batch,
        queries,
        keys,
        width,
        heads,
        causal,
    })
}

/// The sizes of a convolution the CPU kernels handle: f32, one group, no dilation.
fn plain_conv(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<ConvShape> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let dims = |shape: Shape| -> Option<[usize; 4]> { shape.as_slice().try_into().ok() };
    ConvShape::plain(dims(x.shape())?, dims(weight.shape())?, options)
}

/// Inputs below this many elements run on the calling thread: splitting costs more.
const PARALLEL_MIN: usize = 1 << 14;

/// A contiguous f32 copy of `tensor`'s elements that the caller may overwrite: the tensor's own
/// buffer when nothing else holds it, else one fresh copy.
fn owned_f32(tensor: FlexTensor) -> FlexTensor {
    if !(tensor.is_contiguous() && tensor.layout().start_offset() == 0) {
        // Gathering a strided view into row-major order already makes a buffer of its own.
        return tensor.to_contiguous();
    }
    if tensor.is_unique() {
        return tensor;
    }
    let shape = tensor.shape();
    let values = tensor.storage::<f32>()[..shape.num_elements()].to_vec();
    f32_tensor(values, shape)
}

/// The elements of a tensor in row-major order, borrowed.
fn contiguous_f32(tensor: &FlexTensor) -> FlexTensor {
    if tensor.is_contiguous() && tensor.layout().start_offset() == 0 {
        tensor.clone()
    } else {
        tensor.to_contiguous()
    }
}

/// Applies `f` to every element, in parallel chunks.
fn map_f32(x: FlexTensor, f: impl Fn(f32) -> f32 + Sync + Copy) -> FlexTensor {
    let mut out = owned_f32(x);
    let n = out.shape().num_elements();
    let values = &mut out.storage_mut::<f32>()[..n];
    for_chunks(values, None, PARALLEL_MIN, |chunk, _| {
        kernels::map(chunk, f)
    });
    out
}

/// `out[i] = f(a[i], b[i])`, written over `a`'s buffer where possible.
fn zip_f32(a: FlexTensor, b: FlexTensor, f: impl Fn(f32, f32) -> f32 + Sync + Copy) -> FlexTensor {
    let b = contiguous_f32(&b);
    let mut out = owned_f32(a);
    let n = out.shape().num_elements();
    let other = &b.storage::<f32>()[..n];
    let values = &mut out.storage_mut::<f32>()[..n];
    for_chunks(values, Some(other), PARALLEL_MIN, |chunk, other| {
        kernels::zip(chunk, other.expect("second operand"), f)
    });
    out
}

/// Runs `row_fn` over every last-axis row of `x` (with the matching row of `other`), in place.
fn rows_f32(
    x: FlexTensor,
    other: Option<FlexTensor>,
    row_fn: impl Fn(&mut [f32], Option<&[f32]>) + Sync + Copy,
) -> FlexTensor {
    let shape = x.shape();
    let width = match shape.num_dims() {
        0 => 1,
        d => shape[d - 1].max(1),
    };
    let other = other.map(|o| contiguous_f32(&o));
    let mut out = owned_f32(x);
    let n = shape.num_elements();
    let other_values = other.as_ref().map(|o| &o.storage::<f32>()[..n]);
    let values = &mut out.storage_mut::<f32>()[..n];
    let rows_per_task = (PARALLEL_MIN / width).max(1);
    for_chunks(
        values,
        other_values,
        rows_per_task * width,
        |rows, others| {
            for (i, row) in rows.chunks_mut(width).enumerate() {
                row_fn(row, others.map(|o| &o[i * width..(i + 1) * width]));
            }
        },
    );
    out
}

/// Splits `values` (and `other` alike) into parallel chunks of `chunk` elements for `f` (a
/// caller working on rows passes a whole number of rows); small inputs stay on this thread.
fn for_chunks(
    values: &mut [f32],
    other: Option<&[f32]>,
    chunk: usize,
    f: impl Fn(&mut [f32], Option<&[f32]>) + Sync,
) {
    if values.len() < PARALLEL_MIN {
        return f(values, other);
    }
    match other {
        Some(o) => values
            .par_chunks_mut(chunk)
            .zip(o.par_chunks(chunk))
            .for_each(|(v, o)| f(v, Some(o))),
        None => values.par_chunks_mut(chunk).for_each(|v| f(v, None)),
    }
}

/// The logistic function, branch-free so that loops over it vectorise.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    let e = kernels::exp_nonpositive(-z.abs());
    let r = 1.0 / (1.0 + e);
    if z >= 0.0 { r } else { e * r }
}

/// A contiguous `[n, c, h, w]` tensor seen as `n·c` blocks of `h·w` values, block `b` holding
/// channel `b mod c`.
struct Blocks {
    channels: usize,
    pixels: usize,
    /// Values per channel, `n·h·w`.
    count: usize,
}

impl Blocks {
    fn of(shape: &Shape) -> Self {
        let (n, channels) = (shape[0], shape[1]);
        let pixels = shape[2] * shape[3];
        Self {
            channels,
            pixels,
            count: n * pixels,
        }
    }

    fn len(&self) -> usize {
        self.count * self.channels
    }

    /// Computes `f(channel, block starts of that channel)` for every channel, in parallel.
    fn per_channel<T: Send>(
        &self,
        f: impl Fn(usize, std::iter::StepBy<std::ops::Range<usize>>) -> T + Sync,
    ) -> Vec<T> {
        let stride = self.channels * self.pixels;
        (0..self.channels)
            .into_par_iter()
            .map(|channel| f(channel, (channel * self.pixels..self.len()).step_by(stride)))
            .collect()
    }

    /// Each channel's mean and biased variance, summed per block in f32 and across blocks in
    /// f64.
    fn moments(&self, values: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let block = |start: usize| &values[start..start + self.pixels];
        let count = self.count as f64;
        self.per_channel(|_, starts| {
            let mean = starts
                .clone()
                .map(|s| f64::from(kernels::sum(block(s))))
                .sum::<f64>()
                / count;
            let squares: f64 = starts
                .map(|s| f64::from(kernels::squared_deviation_sum(block(s), mean as f32)))
                .sum();
            (mean as f32, (squares / count) as f32)
        })
        .into_iter()
        .unzip()
    }

    /// Runs `f(channel, block, block start)` over every block of `out`, in parallel.
    fn for_each_mut(&self, out: &mut [f32], f: impl Fn(usize, &mut [f32], usize) + Sync) {
        let per_task = (PARALLEL_MIN / self.pixels.max(1)).max(1);
        out.par_chunks_mut(self.pixels.max(1))
            .with_min_len(per_task)
            .enumerate()
            .for_each(|(index, block)| f(index % self.channels, block, index * self.pixels));
    }
}

/// `1/√(var + ε)` per channel: the forward pass's scale and the backward pass's share it.
fn inverse_std(var: &[f32], eps: f64) -> Vec<f32> {
    var.iter().map(|v| 1.0 / (v + eps as f32).sqrt()).collect()
}

/// The elements of a contiguous f32 tensor.
fn elements(tensor: &FlexTensor) -> &[f32] {
    &tensor.storage::<f32>()[..tensor.shape().num_elements()]
}

/// A small tensor's values (a scale, a shift, statistics) as a vector.
fn vector_f32(tensor: &FlexTensor) -> Vec<f32> {
    elements(&contiguous_f32(tensor)).to_vec()
}

/// A gradient that was computed, or an empty tensor in place of one nobody asked for.
fn wanted_tensor(values: Option<Vec<f32>>, shape: Shape) -> FlexTensor {
    match values {
        Some(values) => f32_tensor(values, shape),
        None => f32_tensor(Vec::new(), Shape::new([0])),
    }
}

/// A contiguous f32 tensor of the given values.
fn f32_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}
