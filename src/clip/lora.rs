//! Low-rank adapters (LoRA, Hu et al. 2022) on chosen weights of either tower.
//!
//! An adapted weight `W` (frozen) is used as `W + (α/r)·A·B` with `A`, `B` of rank `r`; only
//! the factors train. Burn's reparameterization does the bookkeeping ([`LoraAdapter`] on a
//! [`Param`]): the model code is unchanged, `Param::val` returns the adapted weight, the
//! optimiser sees the factors as ordinary parameters, and [`merge`] folds them back in.
//!
//! Lethe adapts matrices and convolution kernels alike: a linear weight (Lethe's `[in, out]`)
//! gets `A [in, r]`, `B [r, out]`; a kernel `[out, in, k, k]` is treated as the matrix
//! `[out, in·k·k]` (`A [out, r]`, `B [r, in·k·k]`), which is LoRA on the convolution's unrolled
//! form. One factor starts at zero, so attaching changes no output. Because the adapted
//! weight is an ordinary weight once merged, an edited checkpoint is saved in its source
//! format with its source keys, shapes and dtypes; the factors alone can also be saved
//! ([`write_adapters`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use burn::module::{LoraAdapter, Module, Param, ParamId, Reparameterizer};
use burn::tensor::{Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};

use super::checkpoint::CheckpointError;
use super::safetensors_io::{StoredTensor, write_atomically};
use super::weights::{Bind, Format, Layout, ParamVisitor};
use super::{Clip, host_values};
use crate::data::shapes::Rng;

/// Rank and scale of the adapters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraShape {
    /// Rank `r` of `A·B` (capped at the weight's smaller side).
    pub rank: usize,
    /// `α`: the product is scaled by `α / r`.
    pub alpha: f64,
}

/// Whether a parameter of this many dimensions can carry an adapter: matrices and
/// convolution kernels.
pub fn adaptable(dims: usize) -> bool {
    dims == 2 || dims == 4
}

/// Attaches adapters to the parameters in `layers` (matrices and kernels; others in the set
/// are ignored) and freezes every weight of the model, so that only the factors train. The
/// random factor is drawn from `seed` (uniform in ±1/√fan-in, as PyTorch initialises a
/// linear layer), the other is zero.
pub fn attach(model: Clip, layers: &HashSet<ParamId>, shape: LoraShape, seed: u64) -> Clip {
    model.apply_reparameterization(Attach {
        layers,
        shape,
        rng: Rng::new(seed),
    })
}

/// The model with every adapter folded into its weight (`W + (α/r)·A·B`), all weights
/// trainable again, as a loaded model's are.
pub fn merge(model: Clip) -> Clip {
    model.materialize().unfreeze()
}

struct Attach<'a> {
    layers: &'a HashSet<ParamId>,
    shape: LoraShape,
    rng: Rng,
}

impl Attach<'_> {
    /// Uniform values in ±1/√`fan_in`.
    fn uniform(&mut self, count: usize, fan_in: usize) -> Vec<f32> {
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        (0..count).map(|_| self.rng.range(-bound, bound)).collect()
    }
}

impl Reparameterizer for Attach<'_> {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let chosen = adaptable(D) && self.layers.contains(&param.id);
        let base = param.set_require_grad(false);
        if !chosen {
            return (base, None);
        }
        let dims: [usize; D] = base.lazy_shape().dims();
        let device = base.lazy_device();
        let (rows, columns) = (dims[0], dims[1..].iter().product::<usize>());
        let rank = self.shape.rank.clamp(1, rows.min(columns));
        let factor = |values: Vec<f32>, shape: [usize; 2]| {
            Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), &device))
        };
        // The random factor sits on the input side: rows of a linear weight ([in, out]),
        // columns of an unrolled kernel ([out, in·k·k]).
        let (a, b) = if D == 2 {
            let a = self.uniform(rows * rank, rows);
            (
                factor(a, [rows, rank]),
                factor(vec![0.0; rank * columns], [rank, columns]),
            )
        } else {
            let b = self.uniform(rank * columns, columns);
            (
                factor(vec![0.0; rows * rank], [rows, rank]),
                factor(b, [rank, columns]),
            )
        };
        let adapter = LoraAdapter {
            a,
            b,
            scale: self.shape.alpha / rank as f64,
        };
        (base, Some(adapter))
    }
}

/// One adapter as read from a model: its layer's key (see
/// [`crate::unlearn::params::LayerInfo::key`]) and its factors in PyTorch's convention,
/// `ΔW = scale · B · A` in the layout the checkpoint stores the weight in: `B [out, r]` and
/// `A [r, in]` for an `nn.Linear` weight (`[r, in·k·k]` for a kernel), as PEFT stores
/// `lora_B` / `lora_A`; `B [in, r]` and `A [r, out]` for a projection stored `[in, out]`
/// (open_clip's `text_projection`, `visual.proj`).
#[derive(Clone, Debug)]
pub struct StoredAdapter {
    /// `A`, `[r, columns]` of the stored weight, row-major.
    pub a: (Vec<usize>, Vec<f32>),
    /// `B`, `[rows, r]` of the stored weight, row-major.
    pub b: (Vec<usize>, Vec<f32>),
    /// `α / r`.
    pub scale: f64,
}

/// Every adapter of `model`, by the key of its weight in a checkpoint of `format`.
pub fn adapters(model: &Clip, format: Format) -> BTreeMap<String, StoredAdapter> {
    let mut reader = AdapterReader(BTreeMap::new());
    model.clone().bind(&mut reader, "", format);
    reader.0
}

struct AdapterReader(BTreeMap<String, StoredAdapter>);

impl AdapterReader {
    fn read<const D: usize>(&mut self, key: String, param: &Param<Tensor<D>>, layout: Layout) {
        let Some(adapter) = param.adapter() else {
            return;
        };
        let matrix = |p: &Param<Tensor<2>>| (p.val().dims().to_vec(), host_values(p.val()));
        let transposed = |p: &Param<Tensor<2>>| {
            let t = p.val().transpose();
            (t.dims().to_vec(), host_values(t))
        };
        // Lethe keeps a matrix as [in, out], so ΔW = A·B there, and (A·B)ᵀ = Bᵀ·Aᵀ on a disk
        // that stores it transposed; a kernel is kept as stored, [out, in·k·k] = A·B.
        let (a, b) = if D == 2 && layout == Layout::Transposed {
            (transposed(&adapter.a), transposed(&adapter.b))
        } else {
            (matrix(&adapter.b), matrix(&adapter.a))
        };
        self.0.insert(
            key,
            StoredAdapter {
                a,
                b,
                scale: adapter.scale,
            },
        );
    }
}

impl ParamVisitor for AdapterReader {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, layout: Layout) {
        self.read(key.to_string(), param, layout);
    }

    fn fused<const D: usize>(
        &mut self,
        key: &str,
        parts: [&mut Param<Tensor<D>>; 3],
        layout: Layout,
    ) {
        for (part, param) in ["q", "k", "v"].into_iter().zip(parts) {
            self.read(format!("{key}#{part}"), param, layout);
        }
    }
}

/// Saves `adapters` (as [`adapters`] reads them from a model) as a safetensors file:
/// `<key>.lora_A` and `<key>.lora_B` in f32 (PyTorch's convention, see [`StoredAdapter`]; the
/// three parts of a fused attention projection keep their `#q`/`#k`/`#v` suffix), with each
/// layer's scale in the metadata as `<key>.scale`. Written atomically.
pub fn write_adapters(
    adapters: &BTreeMap<String, StoredAdapter>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let mut tensors: BTreeMap<String, StoredTensor> = BTreeMap::new();
    let mut metadata = HashMap::from([("format".to_string(), "lora".to_string())]);
    for (key, adapter) in adapters {
        for (name, (shape, values)) in [("lora_A", &adapter.a), ("lora_B", &adapter.b)] {
            tensors.insert(
                format!("{key}.{name}"),
                StoredTensor {
                    dtype: Dtype::F32,
                    shape: shape.clone(),
                    bytes: StoredTensor::encode(Dtype::F32, values),
                },
            );
        }
        metadata.insert(format!("{key}.scale"), adapter.scale.to_string());
    }
    let views = tensors
        .iter()
        .map(|(key, t)| TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map(|v| (key, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CheckpointError::Damaged {
            path: path.to_path_buf(),
            problem: format!("cannot encode the adapters ({e})"),
        })?;
    write_atomically(path, |temp| {
        safetensors::serialize_to_file(views, Some(metadata), temp).map_err(|e| {
            CheckpointError::Damaged {
                path: path.to_path_buf(),
                problem: format!("cannot write ({e})"),
            }
        })
    })
}
