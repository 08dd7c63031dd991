//! OpenAI's ModifiedResNet image tower: 3-convolution stem, anti-aliased (average-pool)
//! downsampling, and an attention-pooling head instead of global average pooling.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::module::batch_norm;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

use super::attention::{MultiHeadAttention, zero_linear};
use super::config::ResNetSpec;
use super::weights::{Bind, Format, Layout, ParamVisitor, bind_linear};
use super::{Inspect, Probe, TowerOutput};
use crate::fused;

/// A bias-free 2-D convolution.
#[derive(Module, Debug)]
pub struct Conv {
    /// Kernel `[out, in, k, k]`.
    pub weight: Param<Tensor<4>>,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::zeros([c_out, c_in, kernel, kernel], device)),
            stride,
            padding: kernel / 2,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
        fused::conv2d(x, self.weight.val(), options)
    }
}

/// Batch normalisation, with its running statistics kept as parameters so they load, export and
/// can be read (the subgroup method aligns features to them). Inference uses the running
/// statistics; training from scratch uses each batch's own (see [`BatchStatistics`]).
#[derive(Module, Debug)]
pub struct BatchNorm {
    /// Scale.
    pub weight: Param<Tensor<1>>,
    /// Shift.
    pub bias: Param<Tensor<1>>,
    /// Running mean from pre-training (never trained; detached in the forward pass).
    pub running_mean: Param<Tensor<1>>,
    /// Running variance from pre-training (never trained; detached in the forward pass).
    pub running_var: Param<Tensor<1>>,
}

impl BatchNorm {
    fn new(channels: usize, device: &Device) -> Self {
        let param = || Param::from_tensor(Tensor::zeros([channels], device));
        Self {
            weight: param(),
            bias: param(),
            running_mean: param(),
            running_var: param(),
        }
    }

    fn forward(&self, x: Tensor<4>, batch: Option<&mut BatchStatistics>) -> Tensor<4> {
        let Some(batch) = batch else {
            return batch_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.val().detach(),
                self.running_var.val().detach(),
                BATCH_NORM_EPS,
            );
        };
        let [n, c, h, w] = x.dims();
        if batch.observe {
            let per_channel = x.clone().swap_dims(0, 1).reshape([c, n * h * w]);
            let mean = per_channel.clone().mean_dim(1);
            let var = (per_channel - mean.clone()).square().mean_dim(1);
            batch
                .layers
                .push((mean.reshape([c]), var.reshape([c]), n * h * w));
            return self.forward(x, None);
        }
        let (normalised, mean, var) =
            fused::batch_norm_train(x, self.weight.val(), self.bias.val(), BATCH_NORM_EPS);
        batch.layers.push((mean, var, n * h * w));
        normalised
    }

    /// Moves the running statistics towards one batch's, as PyTorch does in training mode
    /// (unbiased variance, `momentum` weight on the new batch).
    fn update_running(&mut self, mean: Tensor<1>, var: Tensor<1>, count: usize, momentum: f64) {
        let unbiased = var * (count as f64 / (count.max(2) - 1) as f64);
        let blend = |running: Param<Tensor<1>>, batch: Tensor<1>| {
            running.map(|r| (r.detach() * (1.0 - momentum) + batch * momentum).detach())
        };
        self.running_mean = blend(self.running_mean.clone(), mean);
        self.running_var = blend(self.running_var.clone(), unbiased);
    }

    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str) {
        visitor.param(&format!("{prefix}weight"), &mut self.weight, Layout::AsIs);
        visitor.param(&format!("{prefix}bias"), &mut self.bias, Layout::AsIs);
        visitor.param(
            &format!("{prefix}running_mean"),
            &mut self.running_mean,
            Layout::AsIs,
        );
        visitor.param(
            &format!("{prefix}running_var"),
            &mut self.running_var,
            Layout::AsIs,
        );
    }
}

const BATCH_NORM_EPS: f64 = 1e-5;

/// Per-layer statistics of one batch at every batch norm's input, `(mean, biased variance,
/// values per channel)` in forward order. From a training pass
/// ([`ModifiedResNet::forward_batch_statistics`]) they are constants that
/// [`ModifiedResNet::update_running_statistics`] folds into the running averages; from an
/// observing pass ([`ModifiedResNet::forward_observing`]) they stay in the graph, for
/// aligning the features of pictures to the running statistics.
#[derive(Debug, Default)]
pub struct BatchStatistics {
    layers: Vec<(Tensor<1>, Tensor<1>, usize)>,
    /// Record the input statistics (differentiable) but normalise with the running ones.
    observe: bool,
}

fn avg_pool(x: Tensor<4>, size: usize) -> Tensor<4> {
    if size > 1 {
        fused::avg_pool_blocks(x, size)
    } else {
        x
    }
}

/// A convolution followed by batch normalisation.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution.
    pub conv: Conv,
    /// Its normalisation.
    pub bn: BatchNorm,
}

impl ConvBn {
    fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: Conv::new(c_in, c_out, kernel, stride, device),
            bn: BatchNorm::new(c_out, device),
        }
    }

    fn forward(&self, x: Tensor<4>, batch: Option<&mut BatchStatistics>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x), batch)
    }

    /// Binds `{conv}.weight` and the norm under `{bn}.`.
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, conv: &str, bn: &str) {
        visitor.param(
            &format!("{conv}.weight"),
            &mut self.conv.weight,
            Layout::AsIs,
        );
        self.bn.bind(visitor, &format!("{bn}."));
    }
}

/// The bottleneck block; stride is applied by average pooling after the 3×3 convolution.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 reduction.
    pub reduce: ConvBn,
    /// 3×3 convolution.
    pub spatial: ConvBn,
    /// 1×1 expansion (×4).
    pub expand: ConvBn,
    /// Shortcut projection when the shape changes.
    pub downsample: Option<ConvBn>,
    stride: usize,
}

impl Bottleneck {
    fn new(inplanes: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let needs_projection = stride > 1 || inplanes != planes * 4;
        Self {
            reduce: ConvBn::new(inplanes, planes, 1, 1, device),
            spatial: ConvBn::new(planes, planes, 3, 1, device),
            expand: ConvBn::new(planes, planes * 4, 1, 1, device),
            downsample: needs_projection.then(|| ConvBn::new(inplanes, planes * 4, 1, 1, device)),
            stride,
        }
    }

    fn forward(&self, x: Tensor<4>, mut batch: Option<&mut BatchStatistics>) -> Tensor<4> {
        let out = relu(self.reduce.forward(x.clone(), batch.as_deref_mut()));
        let out = relu(self.spatial.forward(out, batch.as_deref_mut()));
        let out = self
            .expand
            .forward(avg_pool(out, self.stride), batch.as_deref_mut());
        let identity = match &self.downsample {
            Some(projection) => projection.forward(avg_pool(x, self.stride), batch),
            None => x,
        };
        relu(out + identity)
    }

    /// The block's norms in forward order.
    fn batch_norms(&self) -> impl Iterator<Item = &BatchNorm> {
        [&self.reduce, &self.spatial, &self.expand]
            .into_iter()
            .chain(self.downsample.as_ref())
            .map(|conv_bn| &conv_bn.bn)
    }

    /// The block's norms in forward order, to update.
    fn batch_norms_mut(&mut self) -> impl Iterator<Item = &mut BatchNorm> {
        [&mut self.reduce, &mut self.spatial, &mut self.expand]
            .into_iter()
            .chain(self.downsample.as_mut())
            .map(|conv_bn| &mut conv_bn.bn)
    }

    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, p: &str) {
        self.reduce
            .bind(visitor, &format!("{p}conv1"), &format!("{p}bn1"));
        self.spatial
            .bind(visitor, &format!("{p}conv2"), &format!("{p}bn2"));
        self.expand
            .bind(visitor, &format!("{p}conv3"), &format!("{p}bn3"));
        if let Some(projection) = self.downsample.as_mut() {
            projection.bind(
                visitor,
                &format!("{p}downsample.0"),
                &format!("{p}downsample.1"),
            );
        }
    }
}

/// Attention pooling: the spatial mean token attends over all positions.
#[derive(Module, Debug)]
pub struct AttentionPool {
    /// Positional embedding `[hw + 1, channels]`.
    pub positions: Param<Tensor<2>>,
    /// q/k/v projections and the output projection (`c_proj`) to the embedding width.
    pub attention: MultiHeadAttention,
}

/// The ModifiedResNet tower.
#[derive(Module, Debug)]
pub struct ModifiedResNet {
    /// Three-convolution stem.
    pub stem: Vec<ConvBn>,
    /// Four stages of bottlenecks.
    pub stages: Vec<Vec<Bottleneck>>,
    /// The attention-pooling head.
    pub pool: AttentionPool,
}

impl ModifiedResNet {
    /// A zero-initialised tower of the given shape.
    pub fn new(spec: &ResNetSpec, embed_dim: usize, device: &Device) -> Self {
        let w = spec.width;
        let stem = vec![
            ConvBn::new(3, w / 2, 3, 2, device),
            ConvBn::new(w / 2, w / 2, 3, 1, device),
            ConvBn::new(w / 2, w, 3, 1, device),
        ];
        let mut inplanes = w;
        let stages = spec
            .layers
            .iter()
            .enumerate()
            .map(|(stage, &blocks)| {
                let planes = w << stage;
                (0..blocks)
                    .map(|block| {
                        let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                        let bottleneck = Bottleneck::new(inplanes, planes, stride, device);
                        inplanes = planes * 4;
                        bottleneck
                    })
                    .collect()
            })
            .collect();
        let channels = spec.feature_width();
        let side = spec.image_size / 32;
        let mut attention = MultiHeadAttention::new(channels, spec.heads, device);
        attention.out = zero_linear(channels, embed_dim, true, device);
        Self {
            stem,
            stages,
            pool: AttentionPool {
                positions: Param::from_tensor(Tensor::zeros([side * side + 1, channels], device)),
                attention,
            },
        }
    }

    /// Encodes normalised pixels `[b, 3, s, s]` with the running batch-norm statistics,
    /// keeping what `inspect` asks for (its probe is on the last stage's output, Grad-CAM's
    /// layer).
    pub fn forward(&self, pixels: Tensor<4>, inspect: Inspect) -> TowerOutput {
        self.forward_with(pixels, inspect, None)
    }

    /// Encodes normalised pixels normalising with the batch's own statistics, as in training,
    /// and returns those statistics for [`Self::update_running_statistics`].
    pub fn forward_batch_statistics(&self, pixels: Tensor<4>) -> (TowerOutput, BatchStatistics) {
        let mut batch = BatchStatistics::default();
        let output = self.forward_with(pixels, Inspect::Nothing, Some(&mut batch));
        (output, batch)
    }

    /// Encodes normalised pixels as at inference (running statistics) and returns the
    /// statistics of every batch norm's input over the batch, still in the graph.
    pub fn forward_observing(&self, pixels: Tensor<4>) -> (TowerOutput, BatchStatistics) {
        let mut batch = BatchStatistics {
            layers: Vec::new(),
            observe: true,
        };
        let output = self.forward_with(pixels, Inspect::Nothing, Some(&mut batch));
        (output, batch)
    }

    /// How far the features of `pixels` lie from what the batch norms remember of the
    /// pre-training data: `Σ_l ‖μ_l − running_mean_l‖₂ + ‖σ_l − √running_var_l‖₂` over every
    /// norm `l`, with `μ_l`, `σ_l` the batch's per-channel input mean and standard deviation.
    /// Differentiable in `pixels` (and the weights); the subgroup method's alignment.
    pub fn feature_alignment_loss(&self, pixels: Tensor<4>) -> Tensor<1> {
        let (_, observed) = self.forward_observing(pixels);
        let norms = self.stem.iter().map(|conv_bn| &conv_bn.bn).chain(
            self.stages
                .iter()
                .flatten()
                .flat_map(Bottleneck::batch_norms),
        );
        norms
            .zip(observed.layers)
            .map(|(norm, (mean, var, _))| {
                let target_mean = norm.running_mean.val().detach();
                let target_std = norm.running_var.val().detach().sqrt();
                let std = (var + BATCH_NORM_EPS).sqrt();
                (mean - target_mean).square().sum().sqrt()
                    + (std - target_std).square().sum().sqrt()
            })
            .reduce(|a, b| a + b)
            .expect("a ResNet has batch norms")
    }

    /// Folds one batch's statistics into every norm's running averages.
    pub fn update_running_statistics(&mut self, batch: BatchStatistics, momentum: f64) {
        let norms = self.stem.iter_mut().map(|conv_bn| &mut conv_bn.bn).chain(
            self.stages
                .iter_mut()
                .flatten()
                .flat_map(Bottleneck::batch_norms_mut),
        );
        for (norm, (mean, var, count)) in norms.zip(batch.layers) {
            norm.update_running(mean, var, count, momentum);
        }
    }

    fn forward_with(
        &self,
        pixels: Tensor<4>,
        inspect: Inspect,
        mut batch: Option<&mut BatchStatistics>,
    ) -> TowerOutput {
        let mut x = pixels;
        for layer in &self.stem {
            x = relu(layer.forward(x, batch.as_deref_mut()));
        }
        x = avg_pool(x, 2);
        for block in self.stages.iter().flatten() {
            x = block.forward(x, batch.as_deref_mut());
        }
        let mut probes = Vec::new();
        if inspect == Inspect::Gradients {
            let (used, probe) = Probe::watch(x);
            x = used;
            probes.push(probe);
        }
        let [batch, channels, h, w] = x.dims();
        let tokens = x.reshape([batch, channels, h * w]).swap_dims(1, 2);
        let mean = tokens.clone().mean_dim(1);
        let tokens =
            Tensor::cat(vec![mean, tokens], 1) + self.pool.positions.val().unsqueeze::<3>();
        let query = tokens.clone().narrow(1, 0, 1);
        // The pool's weights are returned for saliency, but Grad-CAM reads its gradient at the
        // last stage (above), not at the pool.
        let pool_inspect = match inspect {
            Inspect::Gradients => Inspect::Attention,
            other => other,
        };
        let pooled = self
            .pool
            .attention
            .forward(query, tokens, false, pool_inspect);
        let embed = pooled.output.dims()[2];
        TowerOutput {
            embeds: pooled.output.reshape([batch, embed]),
            attentions: pooled.weights.into_iter().collect(),
            probes,
        }
    }
}

impl Bind for ModifiedResNet {
    fn bind<V: ParamVisitor>(&mut self, visitor: &mut V, prefix: &str, _format: Format) {
        let p = format!("{prefix}visual.");
        for (i, layer) in self.stem.iter_mut().enumerate() {
            layer.bind(
                visitor,
                &format!("{p}conv{}", i + 1),
                &format!("{p}bn{}", i + 1),
            );
        }
        for (s, stage) in self.stages.iter_mut().enumerate() {
            for (b, block) in stage.iter_mut().enumerate() {
                block.bind(visitor, &format!("{p}layer{}.{b}.", s + 1));
            }
        }
        let a = format!("{p}attnpool.");
        visitor.param(
            &format!("{a}positional_embedding"),
            &mut self.pool.positions,
            Layout::AsIs,
        );
        let attention = &mut self.pool.attention;
        bind_linear(visitor, &mut attention.q, &format!("{a}q_proj."));
        bind_linear(visitor, &mut attention.k, &format!("{a}k_proj."));
        bind_linear(visitor, &mut attention.v, &format!("{a}v_proj."));
        bind_linear(visitor, &mut attention.out, &format!("{a}c_proj."));
    }
}
