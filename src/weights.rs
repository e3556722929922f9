//! diffusers safetensors <-> UNet2DModel (and any other burn module, e.g. the MNIST classifier).
//! A parameter's module path is its diffusers key, except GroupNorm's gamma/beta (diffusers:
//! weight/bias) and Linear weights, which burn stores as [in, out] and PyTorch as [out, in].

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, View};

use crate::error::{Error, Result};

/// A tensor read from a file, converted to f32, in the file's (PyTorch) layout.
#[derive(Debug, Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Element type to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SaveDtype {
    F32,
    F16,
}

/// Reads every tensor of a safetensors file as f32 (from f32, f16, bf16 or f64; from i64 and
/// i32 too when `ints`, for timesteps), keyed by name. Rejects a broken container, other
/// dtypes, and NaN or infinite values, naming the tensor.
pub fn read_safetensors(file: &str, bytes: &[u8], ints: bool) -> Result<BTreeMap<String, HostTensor>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Safetensors { file: file.into(), message: e.to_string() })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => {
                raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::I64 if ints => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::I32 if ints => raw
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32)
                .collect(),
            other => {
                return Err(Error::Tensor {
                    file: file.into(),
                    tensor: name,
                    message: format!("dtype {other:?} is not supported (expected F32, F16, BF16 or F64)"),
                });
            }
        };
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(Error::Tensor {
                file: file.into(),
                tensor: name,
                message: format!("holds a non-finite value ({}) at flat index {i}", data[i]),
            });
        }
        out.insert(name, HostTensor { shape: view.shape().to_vec(), data });
    }
    Ok(out)
}

/// Legacy attention names (diffusers < 0.15: query/key/value/proj_attn) to the modern ones.
fn modern_key(key: &str) -> String {
    let renames =
        [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")];
    if key.contains(".attentions.") {
        for (old, new) in renames {
            if key.contains(old) {
                return key.replacen(old, new, 1);
            }
        }
    }
    key.to_string()
}

/// Tracks the module path during a walk over the model's parameters.
#[derive(Default)]
struct PathTracker {
    path: Vec<String>,
    containers: Vec<String>,
}

impl PathTracker {
    fn enter(&mut self, name: &str, container: &str) {
        self.path.push(name.to_string());
        self.containers.push(container.to_string());
    }

    fn exit(&mut self) {
        self.path.pop();
        self.containers.pop();
    }

    /// The diffusers key of the current parameter, and whether it is a Linear weight.
    fn key(&self) -> (String, bool) {
        let owner = self.containers.last().map(String::as_str).unwrap_or("");
        let mut path = self.path.clone();
        if owner == "Struct:GroupNorm"
            && let Some(last) = path.last_mut()
        {
            *last = match last.as_str() {
                "gamma" => "weight".into(),
                "beta" => "bias".into(),
                other => other.into(),
            };
        }
        let linear_weight = owner == "Struct:Linear" && path.last().is_some_and(|p| p == "weight");
        (path.join("."), linear_weight)
    }
}

struct Loader<'a> {
    file: &'a str,
    at: PathTracker,
    tensors: BTreeMap<String, HostTensor>,
    /// Zeros for every parameter the file lacks, instead of reporting it missing.
    zeros: bool,
    missing: Vec<String>,
    errors: Vec<Error>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (key, transposed) = self.at.key();
        let mut expected = param.lazy_shape().to_vec();
        if transposed {
            expected.reverse();
        }
        let host = match self.tensors.remove(&key) {
            Some(host) => host,
            None if self.zeros => {
                HostTensor { data: vec![0.0; expected.iter().product()], shape: expected.clone() }
            }
            None => {
                self.missing.push(key);
                return param;
            }
        };
        if host.shape != expected {
            self.errors.push(Error::Tensor {
                file: self.file.into(),
                tensor: key,
                message: format!("expected shape {expected:?}, found {:?}", host.shape),
            });
            return param;
        }
        let device = param.lazy_device();
        let tensor = if D == 4 && crate::unet::channels_last_weights(&device) {
            // Convolution weights laid out [out, kh, kw, in] in memory, the layout burn's
            // cubecl convolution reads: seen as [out, in, kh, kw], they are not copied first.
            let (data, shape) = channels_last(&host);
            let axes: [usize; D] = std::array::from_fn(|k| [0, 3, 1, 2][k]);
            Tensor::<D>::from_data(TensorData::new(data, shape), &device).permute(axes)
        } else {
            // Linear weights are transposed here, on the host, so the parameter is a plain
            // contiguous tensor as if burn had initialised it (same kernels, same numbers).
            let (data, shape) = if transposed { transpose(&host) } else { (host.data, host.shape) };
            Tensor::<D>::from_data(TensorData::new(data, shape), &device)
        };
        // A new parameter under the same id: `Param::map` would first run the initialiser,
        // filling the parameter with random values on the device only to drop them.
        Param::initialized(param.id, tensor).set_require_grad(true)
    }
}

/// A 4-d [o, i, kh, kw] tensor as [o, kh, kw, i].
fn channels_last(t: &HostTensor) -> (Vec<f32>, Vec<usize>) {
    let [o, i, kh, kw] = [t.shape[0], t.shape[1], t.shape[2], t.shape[3]];
    let at = |a, b, y, x| t.data[((a * i + b) * kh + y) * kw + x];
    let data = (0..o)
        .flat_map(|a| {
            (0..kh).flat_map(move |y| (0..kw).flat_map(move |x| (0..i).map(move |b| at(a, b, y, x))))
        })
        .collect();
    (data, vec![o, kh, kw, i])
}

/// A 2-d [rows, cols] tensor as [cols, rows].
fn transpose(t: &HostTensor) -> (Vec<f32>, Vec<usize>) {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let data = (0..cols).flat_map(|c| (0..rows).map(move |r| t.data[r * cols + c])).collect();
    (data, vec![cols, rows])
}

/// Fills `model` with the weights of a diffusers safetensors file. Every problem is reported:
/// shape mismatches by tensor, missing and unexpected keys in full.
pub fn load<M: Module>(model: M, file: &str, bytes: &[u8]) -> Result<M> {
    let tensors =
        read_safetensors(file, bytes, false)?.into_iter().map(|(k, v)| (modern_key(&k), v)).collect();
    let mut loader =
        Loader { file, at: PathTracker::default(), tensors, zeros: false, missing: vec![], errors: vec![] };
    let model = model.map(&mut loader);
    if let Some(first) = loader.errors.into_iter().next() {
        return Err(first);
    }
    let unexpected: Vec<String> = loader.tensors.into_keys().collect();
    if !loader.missing.is_empty() || !unexpected.is_empty() {
        return Err(Error::Keys { file: file.into(), missing: loader.missing, unexpected });
    }
    Ok(model)
}

/// `model` with every parameter zero, laid out on its device as `load` lays out a file's: a
/// stand-in that runs the same kernels as the loaded model (to compile them ahead of the weights).
pub fn zeros<M: Module>(model: M) -> M {
    let at = PathTracker::default();
    let mut loader =
        Loader { file: "", at, tensors: BTreeMap::new(), zeros: true, missing: vec![], errors: vec![] };
    model.map(&mut loader)
}

/// One parameter under its diffusers key, in PyTorch layout, flattened (still on the device).
pub struct NamedTensor {
    pub key: String,
    pub shape: Vec<usize>,
    pub tensor: Tensor<1>,
}

struct Collector {
    at: PathTracker,
    out: Vec<NamedTensor>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (key, transposed) = self.at.key();
        let t = param.val();
        let t = if transposed { t.transpose() } else { t };
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        self.out.push(NamedTensor { key, shape, tensor: t.reshape([n]) });
    }
}

/// Every parameter of the model under its diffusers key. Reading them back is the caller's
/// (sync natively, async on the web).
pub fn named_tensors<M: Module>(model: &M) -> Vec<NamedTensor> {
    let mut c = Collector { at: PathTracker::default(), out: vec![] };
    model.visit(&mut c);
    c.out
}

/// One tensor's bytes as safetensors stores them (little-endian, row-major).
pub(crate) struct Raw {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Serializes host tensors as diffusers does (`{"format": "pt"}` metadata).
pub fn to_safetensors(tensors: &BTreeMap<String, HostTensor>, dtype: SaveDtype) -> Result<Vec<u8>> {
    let raws: Vec<(String, Raw)> = tensors
        .iter()
        .map(|(k, t)| {
            let (dtype, bytes) = match dtype {
                SaveDtype::F32 => (Dtype::F32, t.data.iter().flat_map(|x| x.to_le_bytes()).collect()),
                SaveDtype::F16 => {
                    let max = f32::from(half::f16::MAX);
                    if let Some(x) = t.data.iter().find(|x| x.abs() > max) {
                        return Err(Error::Tensor {
                            file: "(output)".into(),
                            tensor: k.clone(),
                            message: format!("{x} is beyond f16's range (±{max}): save it as f32"),
                        });
                    }
                    (Dtype::F16, t.data.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect())
                }
            };
            Ok((k.clone(), Raw { dtype, shape: t.shape.clone(), bytes }))
        })
        .collect::<Result<_>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(raws.iter().map(|(k, r)| (k.as_str(), r)), Some(meta))
        .map_err(|e| Error::Safetensors { file: "(output)".into(), message: e.to_string() })
}

/// A tensor's values, read back synchronously (native only: the web reads back asynchronously).
#[cfg(not(target_family = "wasm"))]
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().try_into_vec::<f32>().map_err(|e| Error::Backend(format!("{e:?}")))
}

/// The model's weights as host tensors, read back synchronously (native only; the web
/// reads `named_tensors` asynchronously).
#[cfg(not(target_family = "wasm"))]
pub fn to_host<M: Module>(model: &M) -> Result<BTreeMap<String, HostTensor>> {
    named_tensors(model)
        .into_iter()
        .map(|nt| Ok((nt.key, HostTensor { shape: nt.shape, data: to_vec(nt.tensor)? })))
        .collect()
}
